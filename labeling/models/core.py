"""The binocular loop: sample sets, jobs, labels, review tasks, decisions and gold labels."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import ProtectedError, Q
from django.db.models.functions import Substr

from policies.models import Policy, Version, record_deletion_allowed


class SampleSetStatus(models.TextChoices):
    IMPORTING = "importing", "Importing"
    READY = "ready", "Ready"
    FAILED = "failed", "Import failed"


class SampleSetQuerySet(models.QuerySet["SampleSet"]):
    def delete(self) -> tuple[int, dict[str, int]]:
        """Refuses, before anything is collected, to delete a set a finalized version rests on
        (Django admin's bulk delete comes here)."""
        refuse_set_deletion(self)
        return super().delete()


def refuse_set_deletion(sets: models.QuerySet[SampleSet]) -> None:
    """Raise ``ProtectedError`` naming the first set of ``sets`` that a finalized version rests
    on: a job of a finalized version ran on it, or it is a policy's evaluation set."""
    if record_deletion_allowed():
        return
    for sample_set, why in protected_sets(sets)[:1]:
        raise ProtectedError(
            f"Sample set “{sample_set.name}” cannot be deleted: {why}. Archive it instead.",
            {sample_set},
        )


def protected_sets(sets: models.QuerySet[SampleSet]) -> list[tuple[SampleSet, str]]:
    """The sets of ``sets`` a finalized version rests on, each with why (two queries)."""
    finalized = Q(jobs__version__finalized_at__isnull=False) | Q(
        jobs__version__imported_finalized_at__isnull=False
    )
    used = sets.filter(finalized).distinct()
    evaluated = PolicyEvaluation.objects.filter(sample_set__in=sets).select_related(
        "sample_set", "policy"
    )
    out = [(s, "a job of a finalized version ran on it") for s in used.order_by("pk")]
    seen = {s.pk for s, _ in out}
    for row in evaluated.order_by("sample_set_id"):
        assert row.sample_set is not None
        if row.sample_set.pk not in seen:
            seen.add(row.sample_set.pk)
            out.append((row.sample_set, f"it is the evaluation set of “{row.policy.name}”"))
    return out


class SampleSet(models.Model):
    """Imported content items to label; never changed after import."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    source_name = models.CharField(max_length=300, blank=True)
    source_format = models.CharField(max_length=20, blank=True)  # csv, jsonl, parquet, pasted
    item_count = models.PositiveIntegerField(default=0)
    # Everything the import noticed, with row numbers: duplicates, empty rows, over-long items.
    report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    # The import runs as a task; jobs take only a READY set. Rows made before the
    # background import existed are complete, hence the default.
    status = models.CharField(
        max_length=10, choices=SampleSetStatus.choices, default=SampleSetStatus.READY
    )
    # Columns, separator, report threshold and the upload's token, for the task.
    import_options = models.JSONField(default=dict, blank=True)
    # Progress of the running import: bytes of a text file or rows of a Parquet file.
    progress_done = models.PositiveBigIntegerField(default=0)
    progress_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    progress_at = models.DateTimeField(null=True, blank=True)  # last progress: stale imports
    error = models.TextField(blank=True)  # why the import failed; its items were removed
    # Archived: gone from choices and the default list, restorable. A set a finalized version
    # rests on is never deleted (``labeling.records``), only archived.
    archived_at = models.DateTimeField(null=True, blank=True)
    archived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = models.Manager.from_queryset(SampleSetQuerySet)()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        refuse_set_deletion(SampleSet.objects.filter(pk=self.pk))
        return super().delete(*args, **kwargs)

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def is_ready(self) -> bool:
        return self.status == SampleSetStatus.READY

    @property
    def progress_percent(self) -> int:
        if not self.progress_total:
            return 0
        return min(100, int(100 * self.progress_done / self.progress_total))


class Item(models.Model):
    sample_set = models.ForeignKey(SampleSet, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=255)
    text = models.TextField()
    content_hash = models.CharField(max_length=64)  # sha256 of the normalised text
    metadata = models.JSONField(default=dict, blank=True)
    expected_label = models.SmallIntegerField(null=True, blank=True)
    row_number = models.PositiveIntegerField()
    # A test pack's functionality / category (HateCheck, XSTest, OpenAI moderation), or a
    # column the import names: figures break down by it.
    tag = models.CharField(max_length=200, blank=True, default="", db_default="")

    class Meta:
        ordering = ["sample_set", "row_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["sample_set", "external_id"], name="item_external_id_unique"
            ),
        ]
        indexes = [
            # The same content's items, in any set or in given sets (a decision carried to
            # reruns: labeling.review.carry_over). With the set in the index SQLite, which plans
            # without statistics, reads a content's items in those sets instead of every item
            # of the sets (9 ms at 1M labels, growing with the sets, inside the decision's write).
            models.Index(fields=["content_hash", "sample_set"], name="item_hash_set"),
            # Earlier decisions on near-identical content look items up by the start
            # of their text (labeling.review.earlier.NEAR_PREFIX characters) through this index.
            models.Index(Substr("text", 1, 64), name="item_text_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.sample_set_id}:{self.external_id}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Finished"
    # Some items failed on a side: counted and explained on the job page; never decides.
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Side(models.TextChoices):
    A = "A", "A (primary text)"
    B = "B", "B (twin)"


class CompareKind(models.TextChoices):
    """What side B of a job was: the version's twin, another version's text, or pasted text."""

    TWIN = "twin", "its twin"
    VERSION = "version", "another version"
    PASTED = "pasted", "pasted text"


def refuse_job_deletion(jobs: models.QuerySet[Job]) -> None:
    """Raise ``ProtectedError`` for the first job of ``jobs`` whose version is finalized: it is
    part of that version's record (and what keeps its sample set from being deleted)."""
    if record_deletion_allowed():
        return
    finalized = Q(version__finalized_at__isnull=False) | Q(
        version__imported_finalized_at__isnull=False
    )
    first = jobs.filter(finalized).order_by("pk").values_list("pk", flat=True).first()
    if first is not None:
        raise ProtectedError(
            f"Job {first} cannot be deleted: its version is finalized, and the jobs of a "
            "finalized version are part of its record.",
            set(jobs.filter(pk=first)),
        )


def refuse_finalized_job_deletion(sender: Any, instance: Job, **kwargs: Any) -> None:
    """``pre_delete`` of a job: the backstop for a path no early check saw (a cascade from
    another table); ``Job.delete`` and its queryset's refuse first, before a transaction."""
    refuse_job_deletion(Job.objects.filter(pk=instance.pk))


class JobQuerySet(models.QuerySet["Job"]):
    def delete(self) -> tuple[int, dict[str, int]]:
        refuse_job_deletion(self)
        return super().delete()


class Job(models.Model):
    """One binocular run: one version × one sample set × one labeler backend."""

    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="jobs")
    sample_set = models.ForeignKey(SampleSet, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # The policy texts actually sent, frozen at start (the twin may not change afterwards).
    text_a = models.TextField()
    text_b = models.TextField()
    sample_size = models.PositiveIntegerField(null=True, blank=True)  # None: every item
    sample_seed = models.PositiveIntegerField(null=True, blank=True)  # random sample's seed
    item_count = models.PositiveIntegerField(default=0)
    chunk_size = models.PositiveIntegerField(default=64)
    chunk_count = models.PositiveIntegerField(default=0)  # per side
    # Progress counters, updated with F() expressions by the result task.
    done_a = models.PositiveIntegerField(default=0)
    done_b = models.PositiveIntegerField(default=0)
    errors_a = models.PositiveIntegerField(default=0)
    errors_b = models.PositiveIntegerField(default=0)
    failed_chunks = models.PositiveIntegerField(default=0)
    # Reported by the worker that labeled it.
    backend = models.CharField(max_length=40, blank=True)
    model_id = models.CharField(max_length=500, blank=True)
    model_revision = models.CharField(max_length=100, blank=True)
    device = models.CharField(max_length=100, blank=True)
    weak_backend = models.BooleanField(default=False)
    model_seconds = models.FloatField(default=0.0)
    bookkeeping_seconds = models.FloatField(default=0.0)
    stats = models.JSONField(default=dict, blank=True)  # agreement, computed when finished
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set once the background task has sampled the items and created the chunks.
    prepared_at = models.DateTimeField(null=True, blank=True)
    # What side B was (text_b holds its frozen text in every case).
    compare_kind = models.CharField(
        max_length=10, choices=CompareKind.choices, default=CompareKind.TWIN
    )
    compare_version = models.ForeignKey(
        Version, on_delete=models.PROTECT, null=True, blank=True, related_name="compared_in"
    )
    # Set when this job decided a finalize (same transaction, under the row lock).
    # A frozen job's labels, statistics and review tasks never change: late chunk results,
    # retries and resumes are ignored or refused (labeling.jobs checks it).
    frozen_at = models.DateTimeField(null=True, blank=True)

    objects = models.Manager.from_queryset(JobQuerySet)()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["version", "-created_at"]),
            # The jobs page (``labeling.jobs.listing``): newest (highest id) first, by status,
            # policy (through its versions), set or who started it; the pk serves no filter.
            models.Index(fields=["status", "-id"], name="job_status_newest"),
            models.Index(fields=["version", "-id"], name="job_version_newest"),
            models.Index(fields=["sample_set", "-id"], name="job_set_newest"),
            models.Index(fields=["created_by", "-id"], name="job_starter_newest"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk}: {self.version} on {self.sample_set}"

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        refuse_job_deletion(Job.objects.filter(pk=self.pk))
        return super().delete(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def is_preparing(self) -> bool:
        """Created, but its items are still being sampled and chunked (``prepare_job``)."""
        return self.status == JobStatus.QUEUED and self.prepared_at is None

    @property
    def is_weak(self) -> bool:
        """Labeled by the embedding baseline, not CoPE: every page showing them says so."""
        return self.weak_backend or self.backend == "embedding"


class ChunkStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    # Failed, then its failed items went into new chunks by "Retry failed": results ignored.
    RETRIED = "retried", "Retried"


class JobChunk(models.Model):
    """A slice of a job's items for one side: the unit sent to a GPU worker and retried."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    side = models.CharField(max_length=1, choices=Side.choices)
    index = models.PositiveIntegerField()
    item_ids = models.JSONField()
    status = models.CharField(
        max_length=10, choices=ChunkStatus.choices, default=ChunkStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    model_seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "side", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "side", "index"], name="chunk_unique"),
        ]
        indexes = [
            models.Index(fields=["job", "status"]),
            # The few chunks in flight (sent, no answer yet) across all jobs.
            models.Index(
                fields=["job", "sent_at"],
                name="chunk_in_flight",
                condition=Q(status="queued", sent_at__isnull=False),
            ),
            # A job's next chunks to send, in order.
            models.Index(
                fields=["job", "index", "side"],
                name="chunk_unsent",
                condition=Q(status="queued", sent_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.job_id} side {self.side} chunk {self.index}"


class Label(models.Model):
    """CoPE's answer for one item under one wording. ``label`` is None when the item failed."""

    # No index of its own: ``label_unique`` (job, item, side) starts with the job. A second
    # index on it was one more btree insert for every label a job writes.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="labels", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="labels")
    side = models.CharField(max_length=1, choices=Side.choices)
    label = models.SmallIntegerField(null=True, blank=True)
    p1 = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "item", "side"], name="label_unique"),
        ]
        indexes = [
            # The items a job lost, by side (the job page's reasons, "Retry failed").
            models.Index(
                fields=["job", "side"], name="label_failed", condition=Q(label__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.job_id} item {self.item_id} {self.side}={self.label}"


class ReviewStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLAIMED = "claimed", "Claimed"
    RESOLVED = "resolved", "Resolved"
    # The policy's overlap asked for several independent decisions and they disagree on the
    # label: a lead records the final decision (labeling.review.votes).
    ADJUDICATE = "adjudicate", "Awaiting adjudication"


class ReviewTask(models.Model):
    """A mismatch: an item whose A and B labels differ. Claimed by one reviewer at a time."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="review_tasks")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="review_tasks")
    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="review_tasks")
    label_a = models.SmallIntegerField()
    label_b = models.SmallIntegerField()
    p1_a = models.FloatField()
    p1_b = models.FloatField()
    status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.OPEN
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="review_claims",
    )
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # User ids the queue no longer offers it to: they skipped it, or (with overlap) they
    # already gave their own decision on it (labeling.review.votes).
    skipped_by = models.JSONField(default=list, blank=True)
    # User ids it is assigned to; empty: anyone may take it (labeling.review.assignment).
    assigned_to = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Resolved without asking, with the decision made on the same content under the
    # same two texts in an earlier job (see labeling.review.carry_over).
    carried_over = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        # Leads (and admins) settle the mismatches whose reviewers disagree.
        permissions = [("adjudicate_reviewtask", "Can adjudicate reviewers' disagreements")]
        constraints = [
            models.UniqueConstraint(fields=["job", "item"], name="review_task_unique"),
        ]
        indexes = [
            models.Index(fields=["status", "id"], name="review_status_id"),
            models.Index(fields=["job", "status"], name="review_job_status"),
            # A policy's resolved tasks, counted up to the cap on the card: without it SQLite
            # walked every policy's resolved tasks by status (24 ms at 1M labels).
            models.Index(fields=["policy", "status"], name="review_policy_status"),
            models.Index(
                fields=["claim_expires_at"],
                name="review_claimed_expiry",
                condition=Q(status="claimed"),
            ),
            # The queue walks open tasks in id order (whole queue, one policy, one
            # job) without stepping over the resolved history; a reviewer's live claim is
            # found among claims, not among every task they ever resolved.
            models.Index(fields=["id"], name="review_open_id", condition=Q(status="open")),
            models.Index(
                fields=["policy", "id"], name="review_open_policy", condition=Q(status="open")
            ),
            models.Index(fields=["job", "id"], name="review_open_job", condition=Q(status="open")),
            # A policy's claim counts over the card: without it SQLite (which keeps no
            # statistics) walks every task the policy ever had through the policy key.
            models.Index(
                fields=["policy", "claim_expires_at"],
                name="review_claimed_policy",
                condition=Q(status="claimed"),
            ),
            models.Index(
                fields=["claimed_by"], name="review_claimed_by", condition=Q(status="claimed")
            ),
            models.Index(
                fields=["job", "id"], name="review_carried_job", condition=Q(carried_over=True)
            ),
            # A policy's carried-over count on the card, read in this index's order
            # (labeling.review.counts): without it PostgreSQL read the table until it had
            # counted past the cap.
            models.Index(
                fields=["policy", "id"],
                name="review_carried_policy",
                condition=Q(carried_over=True),
            ),
            models.Index(
                fields=["policy", "id"],
                name="review_adjudicate_policy",
                condition=Q(status="adjudicate"),
            ),
        ]

    def __str__(self) -> str:
        return f"Review of item {self.item_id} in job {self.job_id} ({self.status})"

    @property
    def margin(self) -> float:
        return abs(self.p1_a - self.p1_b)


class GoldChoice(models.TextChoices):
    NO = "0", "0 — does not meet the labels"
    YES = "1", "1 — meets the labels"
    UNDECIDABLE = "u", "Policy can't decide"


class Wording(models.TextChoices):
    A = "a", "A (primary text) was right"
    B = "b", "B (twin) was right"
    NEITHER = "n", "Neither"


class Decision(models.Model):
    task = models.OneToOneField(ReviewTask, on_delete=models.CASCADE, related_name="decision")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    label = models.CharField(max_length=1, choices=GoldChoice.choices)
    wording = models.CharField(max_length=1, choices=Wording.choices)
    quote = models.TextField(blank=True)  # the ambiguous clause, quoted from the policy
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(null=True, blank=True)  # set when the decision is edited
    # The earlier decision this one repeats (carried over automatically, or reused
    # by the reviewer with the `r` key); None for a decision made afresh.
    carried_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"Decision on task {self.task_id}: {self.label}/{self.wording}"


class DecisionAction(models.TextChoices):
    EDIT = "edit", "Edited"
    UNDO = "undo", "Undone"


class DecisionChange(models.Model):
    """One correction of a review decision: the decision's fields before and after, who, when.

    Kept against the task, not the decision, so an undone (deleted) decision keeps its history.
    """

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="decision_changes")
    action = models.CharField(max_length=10, choices=DecisionAction.choices)
    before = models.JSONField(default=dict)  # label, wording, quote, note, reviewer id
    after = models.JSONField(default=dict, blank=True)  # empty for an undo
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["task", "-changed_at"], name="decision_change_task")]

    def __str__(self) -> str:
        return f"{self.action} of the decision on task {self.task_id}"


class GoldSource(models.TextChoices):
    IMPORT = "import", "expected label at import"
    REVIEW = "review", "reviewer's decision"
    TYPED = "typed", "typed on the items page"
    AUDIT = "audit", "gold audit"


class GoldLabel(models.Model):
    """The correct label for (policy, item), as last decided by a reviewer."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="gold_labels")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="gold_labels")
    label = models.CharField(max_length=1, choices=GoldChoice.choices)
    decision = models.ForeignKey(Decision, on_delete=models.SET_NULL, null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    updated_at = models.DateTimeField(auto_now=True)
    # Where it came from (GoldSource); an import's expected label needs no row.
    source = models.CharField(max_length=10, choices=GoldSource.choices, default=GoldSource.REVIEW)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["policy", "item"], name="gold_label_unique"),
        ]

    def __str__(self) -> str:
        return f"Gold {self.policy_id}/{self.item_id} = {self.label}"


class GoldChange(models.Model):
    """One change of an item's gold under a policy: old and new label and source, who, when.

    Blank ``old_label`` means there was no gold before; blank ``new_label`` means it was removed.
    """

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="gold_changes")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="gold_changes")
    old_label = models.CharField(max_length=1, blank=True)
    new_label = models.CharField(max_length=1, blank=True)
    old_source = models.CharField(max_length=10, blank=True)
    new_source = models.CharField(max_length=10, choices=GoldSource.choices)
    decision = models.ForeignKey(
        Decision, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["policy", "item", "-changed_at"], name="gold_change_item"),
            # A policy's activity feed pages through its gold edits, newest first.
            models.Index(fields=["policy", "-changed_at", "-id"], name="gold_change_policy_time"),
        ]

    def __str__(self) -> str:
        change = f"{self.old_label or '—'} → {self.new_label or '—'}"
        return f"Gold {self.policy_id}/{self.item_id}: {change}"


# Comparisons, evaluation set, gold sources and policy settings audit -----------------


class PolicyEvaluation(models.Model):
    """The sample set a policy's versions are compared on (the chart and finalize read it).

    Labeling owns it (policies never imports labeling). Without a row, or with no set chosen,
    ``labeling.jobs.evaluation.evaluation_set`` falls back to the first set a job of the policy ran
    on at the minimum sample.
    """

    policy = models.OneToOneField(Policy, on_delete=models.CASCADE, related_name="evaluation")
    sample_set = models.ForeignKey(
        SampleSet, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    chosen_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Evaluation set of policy {self.policy_id}: {self.sample_set_id}"
