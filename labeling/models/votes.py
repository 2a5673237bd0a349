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
