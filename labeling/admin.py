"""Read-only admin for the labeling tables: the app's pages are the real UI.

Labels, items, review tasks, decisions and gold labels are written only by the services, which
keep the job counters, the queue's claims and the gold labels consistent; an edit here would
bypass them. The admin shows them, and may delete a job or a sample set it no longer needs,
unless a finalized version rests on it (archive the set instead).
"""

from collections.abc import Sequence
from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest

from labeling.models import (
    ApiKey,
    Decision,
    GoldLabel,
    Item,
    Job,
    JobChunk,
    Label,
    Notification,
    PolicyWebhook,
    ReviewTask,
    ReviewVote,
    SampleSet,
    WebhookAttempt,
    WebhookDelivery,
)
from labeling.models.core import protected_sets

_M = TypeVar("_M", bound=Model)


class ReadOnlyAdmin(admin.ModelAdmin[_M]):
    """Viewable (and deletable where the model allows it), never added or changed here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False


@admin.register(SampleSet)
class SampleSetAdmin(admin.ModelAdmin[SampleSet]):
    list_display = ["name", "source_format", "item_count", "created_by", "created_at"]
    list_filter = [("archived_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "source_name"]
    readonly_fields = ["report", "item_count", "created_at", "archived_by"]

    def get_deleted_objects(
        self, objs: Sequence[SampleSet] | QuerySet[SampleSet], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """A set a finalized version rests on is listed as protected, with why (the delete
        itself refuses anyway: ``SampleSet.delete`` and its queryset's)."""
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        sets = SampleSet.objects.filter(pk__in=[s.pk for s in objs])
        reasons = [f"{s.name}: {why} (archive it instead)" for s, why in protected_sets(sets)]
        return deleted, counts, perms, [*protected, *reasons]


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin[Item]):
    list_display = ["external_id", "sample_set", "row_number", "expected_label"]
    list_select_related = ["sample_set"]
    search_fields = ["external_id", "content_hash"]
    raw_id_fields = ["sample_set"]


class JobChunkInline(admin.TabularInline[JobChunk, Job]):
    model = JobChunk
    fields = readonly_fields = (
        "side", "index", "status", "attempts", "sent_at", "finished_at", "error"
    )  # fmt: skip
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    """Everything read-only: status and counters move only through the services (cancel,
    resume and retry are buttons on the job page). A job can be deleted."""

    list_display = ["pk", "version", "sample_set", "status", "item_count", "backend", "created_at"]
    list_filter = ["status", "backend"]
    list_select_related = ["version__policy", "sample_set"]
    search_fields = ["=id", "version__policy__name", "sample_set__name"]
    inlines = [JobChunkInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return [f.name for f in Job._meta.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a job is started from a version page

    def get_deleted_objects(
        self, objs: Sequence[Job] | QuerySet[Job], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """A job of a finalized version is part of its record: listed as protected."""
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        finalized = Q(version__finalized_at__isnull=False) | Q(
            version__imported_finalized_at__isnull=False
        )
        kept = Job.objects.filter(finalized, pk__in=[j.pk for j in objs]).order_by("pk")
        reasons = [
            f"Job {pk}: its version is finalized" for pk in kept.values_list("pk", flat=True)
        ]
        return deleted, counts, perms, [*protected, *reasons]


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin[Label]):
    list_display = ["job", "item", "side", "label", "p1", "error"]
    list_filter = ["side"]
    raw_id_fields = ["job", "item"]


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin[ReviewTask]):
    list_display = ["pk", "job", "item", "policy", "label_a", "label_b", "status", "claimed_by"]
    list_filter = ["status"]
    list_select_related = ["job", "item", "policy", "claimed_by"]
    search_fields = ["=id", "item__external_id", "policy__name"]
    raw_id_fields = ["job", "item", "policy", "claimed_by"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin[Decision]):
    list_display = ["pk", "task", "reviewer", "label", "wording", "created_at"]
    list_filter = ["label", "wording"]
    list_select_related = ["task", "reviewer"]
    search_fields = ["note", "quote"]
    raw_id_fields = ["task", "reviewer"]


@admin.register(ReviewVote)
class ReviewVoteAdmin(ReadOnlyAdmin[ReviewVote]):
    """A vote counts towards its task's overlap and agreement: never deleted by hand either."""

    list_display = ["pk", "task", "reviewer", "label", "wording", "seconds", "created_at"]
    list_filter = ["label"]
    list_select_related = ["task", "reviewer"]
    raw_id_fields = ["task", "reviewer"]

    def has_delete_permission(self, request: HttpRequest, obj: ReviewVote | None = None) -> bool:
        return False


@admin.register(GoldLabel)
class GoldLabelAdmin(ReadOnlyAdmin[GoldLabel]):
    list_display = ["policy", "item", "label", "decided_by", "updated_at"]
    list_filter = ["label"]
    list_select_related = ["policy", "item", "decided_by"]
    search_fields = ["policy__name", "item__external_id"]
    raw_id_fields = ["policy", "item", "decision", "decided_by"]


# API keys are created and revoked on their own page (the key is shown once there).
@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin[ApiKey]):
    list_display = [
        "name",
        "prefix",
        "owner",
        "can_read",
        "can_label",
        "can_label_text",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["can_label", "can_label_text", "revoked_at", "expires_at"]
    search_fields = ["name", "prefix", "owner__username"]
    exclude = ["key_hash"]


# Notifications and webhooks: written by ``labeling.notify`` (a webhook's changes are audited
# there), read here. A webhook's secret is never shown, only its last characters.


@admin.register(PolicyWebhook)
class PolicyWebhookAdmin(ReadOnlyAdmin[PolicyWebhook]):
    list_display = ["policy", "url", "enabled", "masked_secret", "updated_by", "updated_at"]
    fields = ("policy", "url", "enabled", "masked_secret", "updated_by", "updated_at")
    readonly_fields = fields
    list_select_related = ["policy", "updated_by"]


class WebhookAttemptInline(admin.TabularInline[WebhookAttempt, WebhookDelivery]):
    model = WebhookAttempt
    fields = ("number", "started_at", "status_code", "error", "duration_ms", "next_retry_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin[WebhookDelivery]):
    list_display = ["created_at", "webhook", "event", "status", "attempts", "next_attempt_at"]
    list_filter = ["status"]
    list_select_related = ["webhook__policy", "event"]
    inlines = [WebhookAttemptInline]

    def has_delete_permission(
        self, request: HttpRequest, obj: WebhookDelivery | None = None
    ) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin[Notification]):
    list_display = ["created_at", "user", "event", "in_app", "read_at", "email_status"]
    list_filter = ["email_status", "in_app"]
    list_select_related = ["user", "event"]
