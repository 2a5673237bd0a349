"""Read-mostly admin for the labeling tables (the app's pages are the real UI)."""

from django.contrib import admin

from labeling.models import Item, Job, JobChunk, Label, SampleSet


@admin.register(SampleSet)
class SampleSetAdmin(admin.ModelAdmin):
    list_display = ["name", "source_format", "item_count", "created_by", "created_at"]
    search_fields = ["name", "source_name"]
    readonly_fields = ["report", "item_count", "created_at"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "sample_set", "row_number", "expected_label"]
    list_select_related = ["sample_set"]
    search_fields = ["external_id", "content_hash"]
    raw_id_fields = ["sample_set"]


class JobChunkInline(admin.TabularInline):
    model = JobChunk
    fields = ["side", "index", "status", "attempts", "sent_at", "finished_at", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["pk", "version", "sample_set", "status", "item_count", "backend", "created_at"]
    list_filter = ["status", "backend"]
    list_select_related = ["version__policy", "sample_set"]
    raw_id_fields = ["version", "sample_set", "created_by"]
    readonly_fields = [
        "text_a",
        "text_b",
        "done_a",
        "done_b",
        "errors_a",
        "errors_b",
        "failed_chunks",
        "model_seconds",
        "bookkeeping_seconds",
        "stats",
    ]
    inlines = [JobChunkInline]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["job", "item", "side", "label", "p1", "error"]
    list_filter = ["side"]
    raw_id_fields = ["job", "item"]
