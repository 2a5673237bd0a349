from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from policies.models import Policy, PolicySettingChange, SettingPath, TwinJob, Version


class VersionInline(admin.TabularInline[Version, Policy]):
    model = Version
    fields = readonly_fields = (
        "number", "author", "created_at", "change_note", "twin_origin", "finalized_at"
    )  # fmt: skip
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Policy | None = None) -> bool:
        return False  # versions are created in the editor, never here


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin[Policy]):
    list_display = [
        "name",
        "slug",
        "agreement_threshold",
        "min_sample_size",
        "min_kappa",
        "created_by",
        "updated_at",
    ]
    search_fields = ["name", "description"]
    list_filter = [("archived_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["slug", "created_by", "created_at", "updated_at", "archived_by"]
    inlines = [VersionInline]

    def get_deleted_objects(
        self, objs: Sequence[Policy] | QuerySet[Policy], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """The delete page (one policy, or the bulk action) lists a policy's finalized versions
        as protected, with why, so it refuses with a page instead of a bare 403
        (``Policy.delete`` refuses anyway, on every path)."""
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        finalized = Q(finalized_at__isnull=False) | Q(imported_finalized_at__isnull=False)
        versions = (
            Version.objects.filter(finalized, policy__in=[p.pk for p in objs])
            .select_related("policy")
            .order_by("policy_id", "number")
        )
        reasons = [
            f"{v.policy.name}: version {v.number} is finalized (archive the policy instead)"
            for v in versions
        ]
        if reasons:
            # VersionAdmin denies deleting a finalized version, which the page would show as a
            # missing permission (or a bare 403 on POST) instead of the reason.
            perms = set()
        return deleted, counts, perms, [*protected, *reasons]

    def save_model(
        self, request: HttpRequest, obj: Policy, form: ModelForm[Policy], change: bool
    ) -> None:
        # The admin site lets only signed-in staff in, so the user is never anonymous.
        if not request.user.is_authenticated:
            raise PermissionDenied
        if not change:
            obj.created_by = request.user
        # Policy.save audits a changed threshold, minimum sample or minimum kappa with who and how.
        obj.save(changed_by=request.user, via=SettingPath.ADMIN)


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin[Version]):
    list_display = ["__str__", "author", "created_at", "twin_origin", "finalized_at"]
    list_filter = ["twin_origin", "policy"]
    search_fields = ["policy__name", "change_note"]
    list_select_related = ["policy", "author"]
    # A version is immutable: its texts, finalize record (evidence, override reason, twin
    # warnings) and import record are shown, never edited here. ``Version.save`` refuses such a
    # change anyway; here no field is offered.
    readonly_fields = [
        "policy", "number", "text", "twin_text", "twin_origin", "twin_model", "twin_prompt",
        "twin_similarity", "twin_warnings", "twin_updated_at", "change_note", "author", "parent",
        "created_at", "finalized_at", "finalized_by", "finalize_override", "finalize_evidence",
        "imported_from", "imported_finalized_at", "imported_finalized_by", "imported_evidence",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        # Nothing here is editable: the page is the view page, and a POST is refused.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        if obj is not None and (obj.is_finalized or obj.imported_finalized_at is not None):
            return False  # a finalized version is a record
        return super().has_delete_permission(request, obj)


@admin.register(PolicySettingChange)
class PolicySettingChangeAdmin(admin.ModelAdmin[PolicySettingChange]):
    """The settings audit, to read: a row is never added, changed or deleted by hand."""

    list_display = ["changed_at", "policy", "field", "old_value", "new_value", "changed_by", "via"]
    list_filter = ["field", "via"]
    list_select_related = ["policy", "changed_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: PolicySettingChange | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: PolicySettingChange | None = None
    ) -> bool:
        return False


@admin.register(TwinJob)
class TwinJobAdmin(admin.ModelAdmin[TwinJob]):
    list_display = ["pk", "version", "status", "requested_by", "created_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["version__policy", "requested_by"]
    readonly_fields = [
        "version", "requested_by", "created_at", "finished_at", "model", "prompt",
        "result_text", "similarity", "error",
    ]  # fmt: skip
