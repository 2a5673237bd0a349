from django.urls import path, re_path

from labeling import (
    api_views,
    export_views,
    finalize_views,
    gold_views,
    review_views,
    try_views,
    views,
    workers_views,
)

app_name = "labeling"

urlpatterns = [
    # Sample sets
    path("samples/", views.sampleset_list, name="sampleset_list"),
    path("samples/import/", views.sampleset_import, name="sampleset_import"),
    path("samples/import/<str:token>/", views.sampleset_preview, name="sampleset_preview"),
    path("samples/<int:pk>/", views.sampleset_detail, name="sampleset_detail"),
    # Jobs and the panels the policy pages include
    path("versions/<int:version_id>/jobs/", views.job_start, name="job_start"),
    path("versions/<int:version_id>/panel/", views.version_panel, name="version_panel"),
    path("policies/<int:policy_id>/panel/", views.policy_panel, name="policy_panel"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:pk>/resume/", views.job_resume, name="job_resume"),
    path("jobs/<int:pk>/retry/", views.job_retry, name="job_retry"),
    # Review queue and notes
    path("review/", review_views.review_queue, name="queue"),
    path("review/<int:task_id>/decide/", review_views.review_submit, name="review_submit"),
    path("review/<int:task_id>/skip/", review_views.review_skip, name="review_skip"),
    path("review/skipped/", review_views.review_unskip, name="review_unskip"),
    path("jobs/<int:job_id>/review-notes/", review_views.review_notes_view, name="review_notes"),
    # d-review: a task's whole content and wordings, on demand
    path("review/<int:task_id>/full/", review_views.review_full, name="review_full"),
    # Finalizing
    path("versions/<int:version_id>/finalize/", finalize_views.finalize_view, name="finalize"),
    path(
        "versions/<int:version_id>/finalize/panel/",
        finalize_views.finalize_panel,
        name="finalize_panel",
    ),
    # Model workers (g-deploy)
    path("workers/", workers_views.worker_list, name="workers"),
    # a-policies: exports of a finalized version and of a whole policy
    re_path(
        r"^versions/(?P<version_id>[0-9]+)/export\.(?P<fmt>md|twin\.md|csv)$",
        export_views.version_export,
        name="version_export",
    ),
    re_path(
        r"^policies/(?P<policy_id>[0-9]+)/export\.(?P<fmt>json|jsonl)$",
        export_views.policy_export,
        name="policy_export",
    ),
    # b-gold: per-item results, typed gold, comparing versions, a policy's settings
    path("jobs/<int:pk>/items/", gold_views.job_items, name="job_items"),
    path("jobs/<int:pk>/items.csv", gold_views.job_items_csv, name="job_items_csv"),
    path("jobs/<int:pk>/gold/", gold_views.job_gold_set, name="job_gold_set"),
    path("policies/<int:policy_id>/compare/", gold_views.version_compare, name="version_compare"),
    path("policies/<int:policy_id>/settings/", gold_views.policy_settings, name="policy_settings"),
    # c-live: the Try box and API keys
    path("try/", try_views.try_run, name="try"),
    path("api-keys/", api_views.apikey_list, name="apikey_list"),
    path("api-keys/<int:pk>/revoke/", api_views.apikey_revoke, name="apikey_revoke"),
]
