from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest

from policies.models import Policy, TwinJob, Version


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
        "created_by",
        "updated_at",
    ]
    search_fields = ["name", "description"]
    readonly_fields = ["slug", "created_by", "created_at", "updated_at"]
    inlines = [VersionInline]

    def save_model(
        self, request: HttpRequest, obj: Policy, form: ModelForm[Policy], change: bool
    ) -> None:
        # The admin site lets only signed-in staff in, so the user is never anonymous.
        if not change and request.user.is_authenticated:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin[Version]):
    list_display = ["__str__", "author", "created_at", "twin_origin", "finalized_at"]
    list_filter = ["twin_origin", "policy"]
    search_fields = ["policy__name", "change_note"]
    list_select_related = ["policy", "author"]
    # A version is immutable: its texts and history are shown, never edited here.
    readonly_fields = [
        "policy", "number", "text", "twin_text", "twin_origin", "twin_model", "twin_prompt",
        "twin_similarity", "twin_updated_at", "change_note", "author", "parent", "created_at",
        "finalized_at", "finalized_by",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
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
