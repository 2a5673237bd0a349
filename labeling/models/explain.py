"""Attribution's tables (``labeling.explain``): runs, their chunks, each item's scores under the
policy variants, each item's conclusion and the clauses found to decide it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from labeling.models.core import ChunkStatus, Item, Job, Side


class ExplainStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Finished"
    # Some chunks were given up or failed: ``items_done`` of ``items_total`` were explained.
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class RunKind(models.TextChoices):
    """What a run scores. One engine (chunks, flow control, resend, give-up, record) for all."""

    # A job's items under every variant of its two wordings; each item analysed (ExplainItem).
    ATTRIBUTION = "attribution", "Attribution"
    # A version's probes on its policy's evaluation set (``labeling.probes``): the variants are
    # the run's own (``variant_specs``), the conclusions its ``summary``.
    PROBE = "probe", "Probe"
    # Signed-off carve-outs of a probe run (``parent``): each chunk carries its own variants.
    CARVEOUT = "carveout", "Carve-out probe"
    # A what-if edit of one clause (``labeling.whatif``): the edited wordings scored on the
    # deciding job's items; ``summary`` holds the before -> after table. A suggested rewrite is
    # one of these too, with ``parent`` its SUGGEST run.
    WHATIF = "whatif", "What-if edit"
    # Suggested rewrites of one clause asked of the LLM backend: holds the prompt and the
    # answer's state (``llm_*``); its candidates are WHATIF runs with it as ``parent``.
    SUGGEST = "suggest", "Suggested rewrites"
    # The regression check at finalize: which clause decides each gold verdict that changed
    # against the last finalized version (attribution between the two texts).
    REGRESSION = "regression", "Regression check"


class ExplainRun(models.Model):
    """One run of policy variants over items, in chunks of items, on the model workers.

    ``kind`` attribution: some of a job's items under every distinct variant of the job's two
    wordings (``worker.variants``). probe / carveout: a version's items under the variants the
    run carries itself (``variant_specs``), with no job."""

    kind = models.CharField(max_length=12, choices=RunKind.choices, default=RunKind.ATTRIBUTION)
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="explain_runs", null=True, blank=True
    )
    version = models.ForeignKey(  # probe and carveout runs: the version probed
        "policies.Version",
        on_delete=models.CASCADE,
        related_name="probe_runs",
        null=True,
        blank=True,
    )
    sample_set = models.ForeignKey(  # probe runs: the set the items were drawn from
        "labeling.SampleSet", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )
    parent = models.ForeignKey(  # carveout runs: the probe run whose carve-outs they score
        "self", on_delete=models.CASCADE, related_name="children", null=True, blank=True
    )
    # probe / carveout: [{"key": ..., "policy": ...}, ...] every variant the run may send.
    variant_specs = models.JSONField(default=list, blank=True)
    # probe: the conclusions (``labeling.probes``), written when the run finishes.
    summary = models.JSONField(default=dict, blank=True)
    # probe, with an LLM backend (COPE_TWIN_BACKEND): a fresh rewording of the whole policy
    # (labels should not move under it) and the carve-outs (``Carveout``), asked once the run
    # has finished. ``llm_status``: "" (none asked), requested, done, failed.
    rewording = models.TextField(blank=True)
    llm_status = models.CharField(max_length=10, blank=True)
    llm_model = models.CharField(max_length=300, blank=True)
    llm_prompt = models.TextField(blank=True)  # what was sent (authors may see what left)
    llm_error = models.TextField(blank=True)
    # whatif / suggest / regression: the clause edited (a key of the version's text,
    # ``worker.clauses``), the new wording of it and of its twin's aligned clause ("" keeps the
    # twin), and a suggestion's one-line rationale.
    clause_key = models.CharField(max_length=200, blank=True)
    edit_a = models.TextField(blank=True)
    edit_b = models.TextField(blank=True)
    rationale = models.TextField(blank=True)
    # regression: the last finalized version the version is compared with.
    baseline_version = models.ForeignKey(
        "policies.Version", on_delete=models.CASCADE, related_name="+", null=True, blank=True
    )
    # whatif: the draft version "Make it a version" created from this edit.
    made_version = models.ForeignKey(
        "policies.Version", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )
    attempt = models.PositiveIntegerField()  # 1, 2, … per job
    status = models.CharField(
        max_length=10, choices=ExplainStatus.choices, default=ExplainStatus.QUEUED
    )
    requested_by = models.ForeignKey(  # None: started automatically when the job finished
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    items_total = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)  # every variant scored and analysed
    items_failed = models.PositiveIntegerField(default=0)
    variants = models.PositiveIntegerField(default=0)  # distinct variants scored per item
    scores = models.PositiveIntegerField(default=0)  # variant scores recorded
    chunk_size = models.PositiveIntegerField(default=8)
    chunk_count = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    chunks_failed = models.PositiveIntegerField(default=0)
    backend = models.CharField(max_length=40, blank=True)
    model_id = models.CharField(max_length=500, blank=True)
    weak_backend = models.BooleanField(default=False)
    model_seconds = models.FloatField(default=0.0)
    bookkeeping_seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # By id, not by job: the job is nullable, and an ordering through it would outer-join
        # (PostgreSQL refuses FOR UPDATE on the nullable side of one).
        ordering = ["-id"]
        constraints = [
            # Attribution runs are numbered per job, every other kind per version and kind.
            models.UniqueConstraint(
                fields=["job", "attempt"],
                name="explain_run_unique",
                condition=Q(kind="attribution"),
            ),
            models.UniqueConstraint(
                fields=["version", "kind", "attempt"],
                name="probe_run_unique",
                condition=~Q(kind="attribution"),
            ),
        ]
        indexes = [
            models.Index(fields=["version", "kind", "-attempt"], name="probe_run_version"),
        ]

    def __str__(self) -> str:
        if self.job_id is None:
            return f"{self.get_kind_display()} run {self.attempt} of version {self.version_id}"
        return f"Explain run {self.attempt} of job {self.job_id}"

    @property
    def is_active(self) -> bool:
        return self.status in (ExplainStatus.QUEUED, ExplainStatus.RUNNING)

    @property
    def is_weak(self) -> bool:
        return self.weak_backend or self.backend == "embedding"


class ExplainChunk(models.Model):
    """A slice of a run's items sent with every variant: the unit sent, re-sent and given up
    (the same bookkeeping as ``JobChunk``)."""

    run = models.ForeignKey(ExplainRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    item_ids = models.JSONField()
    # None: every variant of the run; else the keys this chunk's items are scored under
    # (a carve-out applies to its own item only).
    variant_keys = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=ChunkStatus.choices, default=ChunkStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    model_seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="explain_chunk_unique"),
        ]
        indexes = [
            models.Index(
                fields=["run", "sent_at"],
                name="explain_chunk_in_flight",
                condition=Q(status="queued", sent_at__isnull=False),
            ),
            models.Index(
                fields=["run", "index"],
                name="explain_chunk_unsent",
                condition=Q(status="queued", sent_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Explain run {self.run_id} chunk {self.index}"


class ExplainScore(models.Model):
    """One item under one policy variant of a run (``key`` as ``worker.variants`` builds it):
    the raw figures the analysis reads. ``delta`` is the variant's margin minus its side's base
    margin; ``flipped``: its label differs from its side's base label."""

    run = models.ForeignKey(ExplainRun, on_delete=models.CASCADE, related_name="+", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=300)
    label = models.SmallIntegerField(null=True, blank=True)
    p1 = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True)
    delta = models.FloatField(null=True, blank=True)
    flipped = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "item", "key"], name="explain_score_unique"),
        ]

    def __str__(self) -> str:
        return f"Run {self.run_id} item {self.item_id} {self.key}={self.label}"


class ChunkScores(models.Model):
    """A probe's, carve-out's, what-if's, suggestion's or regression run's answers for one chunk,
    as packed binary columns (``labeling.run_scores.encode``) instead of a row per item and
    variant: those runs' readers want a chunk's labels all at once, and a row each (3,400 for a
    probe chunk) cost more to write than the model took to score them. Attribution runs keep
    ``ExplainScore`` rows: their pages read one item's scores at a time."""

    chunk = models.OneToOneField(
        ExplainChunk, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    run = models.ForeignKey(ExplainRun, on_delete=models.CASCADE, related_name="+")
    count = models.PositiveIntegerField()
    keys = models.JSONField()  # the variant keys the key column indexes
    errors = models.JSONField(default=dict)  # {position: error}
    columns = models.BinaryField()

    def __str__(self) -> str:
        return f"Scores of explain chunk {self.chunk_id} ({self.count})"


class ExplainVerdict(models.TextChoices):
    DECIDED = "decided", "One clause decides"
    TIE = "tie", "Tie"
    NONE = "none", "No single clause decides"
    AGREE = "agree", "Both wordings agree"
    FAILED = "failed", "Could not be explained"


class ExplainItem(models.Model):
    """The conclusion for one item of a job (the latest run that explained it wins)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(ExplainRun, on_delete=models.CASCADE, related_name="items")
    label_a = models.SmallIntegerField(null=True, blank=True)
    label_b = models.SmallIntegerField(null=True, blank=True)
    margin_a = models.FloatField(null=True, blank=True)
    margin_b = models.FloatField(null=True, blank=True)
    gold = models.SmallIntegerField(null=True, blank=True)  # as of the run
    verdict = models.CharField(max_length=10, choices=ExplainVerdict.choices)
    # DECIDED: A's deciding clause and B's wording of it; TIE: the first of the tied ones.
    clause_a = models.CharField(max_length=200, blank=True)
    clause_b = models.CharField(max_length=200, blank=True)
    effect = models.FloatField(null=True, blank=True)  # |Δ margin| of the deciding swap
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "item"], name="explain_item_unique"),
        ]
        indexes = [models.Index(fields=["job", "verdict"], name="explain_item_verdict")]

    def __str__(self) -> str:
        return f"Job {self.job_id} item {self.item_id}: {self.verdict} {self.clause_a}"


class FindingRole(models.TextChoices):
    DECIDES = "decides", "Decides the mismatch"  # the swap turns A's label into B's
    TIED = "tied", "Tied for deciding"  # one of several swaps with the same top effect
    NECESSARY = "necessary", "Necessary for the label"  # removing it flips the side's label
    GOLD_MISS = "gold_miss", "Causes a gold miss"  # removing it turns a wrong label into gold


class ExplainFinding(models.Model):
    """One clause's part in one item's label under one wording: the rows the pages count
    (clauses ranked per job) and list (items per clause). ``clause`` is a clause key of
    ``side``'s text (``worker.clauses``); ``other`` its aligned counterpart for a swap."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False)
    run = models.ForeignKey(ExplainRun, on_delete=models.CASCADE, related_name="+", db_index=False)
    side = models.CharField(max_length=1, choices=Side.choices)
    role = models.CharField(max_length=10, choices=FindingRole.choices)
    clause = models.CharField(max_length=200)
    other = models.CharField(max_length=200, blank=True)
    effect = models.FloatField()  # |Δ margin| (the answer's logit) of the test
    rank = models.PositiveSmallIntegerField(default=0)  # 0 = largest effect in its (item, role)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "item", "side", "role", "clause"], name="explain_finding_unique"
            ),
        ]
        indexes = [
            # Clauses ranked per job: GROUP BY (side, role, clause).
            models.Index(fields=["job", "role", "side", "clause"], name="explain_finding_clause"),
            # The findings of one run (replaced when a later run explains the item again).
            models.Index(fields=["run"], name="explain_finding_run"),
        ]

    def __str__(self) -> str:
        return f"Job {self.job_id} item {self.item_id}: {self.side} {self.clause} {self.role}"


class CarveoutStatus(models.TextChoices):
    PROPOSED = "proposed", "Waiting for sign-off"
    APPROVED = "approved", "Signed off"
    REJECTED = "rejected", "Rejected"


class Carveout(models.Model):
    """An Excludes criterion an LLM wrote to exempt exactly one item's case (a probe's
    carve-out): once an author signs it off, the item is scored under the policy with it added,
    and its label should turn 0."""

    run = models.ForeignKey(ExplainRun, on_delete=models.CASCADE, related_name="carveouts")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=100)  # the label code whose Excludes gets the criterion
    criterion = models.TextField()
    status = models.CharField(
        max_length=10, choices=CarveoutStatus.choices, default=CarveoutStatus.PROPOSED
    )
    model = models.CharField(max_length=300, blank=True)  # the LLM that wrote it
    prompt = models.TextField(blank=True)  # what was sent (authors may see what left)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # After scoring: the label and p(1) under the policy with the criterion added.
    label_after = models.SmallIntegerField(null=True, blank=True)
    p1_after = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "item"]
        constraints = [
            models.UniqueConstraint(fields=["run", "item", "label"], name="carveout_unique"),
        ]

    def __str__(self) -> str:
        return f"Carve-out of item {self.item_id} ({self.label}) for run {self.run_id}"
