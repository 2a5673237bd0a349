"""Independent reviewer decisions on one mismatch, when a policy asks for several.

A vote is one reviewer's own decision, made without seeing the others'. The task's final
``Decision`` (what gold labels, notes and exports read) is made from the votes when they agree
on the label, or by a lead when they do not (``labeling.review.votes``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from labeling.models.core import GoldChoice, ReviewTask, Wording


class ReviewVote(models.Model):
    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="votes")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_votes"
    )
    label = models.CharField(max_length=1, choices=GoldChoice.choices)
    wording = models.CharField(max_length=1, choices=Wording.choices)
    quote = models.TextField(blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # From the claim (or its last renewal) to the vote: the reviewer's time on the card.
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["task", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "reviewer"], name="review_vote_unique"),
        ]
        indexes = [models.Index(fields=["reviewer", "created_at"], name="review_vote_reviewer")]

    def __str__(self) -> str:
        return f"Vote of user {self.reviewer_id} on task {self.task_id}: {self.label}"


class AgreementSnapshot(models.Model):
    """A job's (or, with no job, a policy's) reviewer agreement as of ``computed_at``: what
    the agreement pages show, so no request reads the votes (``labeling.review.snapshots``).

    ``changes`` counts the changes to the figures' inputs (a vote, an adjudication, a voted
    task's final decision edited); each writer adds one in its own transaction. ``seen`` is
    the count the stored figures were computed from: the snapshot is current when they are
    equal."""

    policy = models.ForeignKey(
        "policies.Policy", on_delete=models.CASCADE, related_name="agreement_snapshots"
    )
    job = models.ForeignKey(
        "labeling.Job",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="agreement_snapshots",
    )
    figures = models.JSONField(default=dict, blank=True)
    changes = models.PositiveBigIntegerField(default=0)
    seen = models.PositiveBigIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)
    # When a refresh was last sent: a page polling a stale snapshot sends one only when none
    # was sent lately (a lost message is sent again after ``REFRESH_AGAIN_SECONDS``).
    requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["policy"],
                condition=models.Q(job__isnull=True),
                name="agreement_snapshot_policy",
            ),
            models.UniqueConstraint(
                fields=["job"],
                condition=models.Q(job__isnull=False),
                name="agreement_snapshot_job",
            ),
        ]

    def __str__(self) -> str:
        scope = f"job {self.job_id}" if self.job_id else f"policy {self.policy_id}"
        return f"Agreement of {scope} ({self.seen}/{self.changes})"

    @property
    def current(self) -> bool:
        return self.computed_at is not None and self.seen >= self.changes
