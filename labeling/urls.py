from django.urls import path

from labeling import api_views, finalize_views, review_views, try_views, views

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
    # Finalizing
    path("versions/<int:version_id>/finalize/", finalize_views.finalize_view, name="finalize"),
    path(
        "versions/<int:version_id>/finalize/panel/",
        finalize_views.finalize_panel,
        name="finalize_panel",
    ),
    # c-live: the Try box and API keys
    path("try/", try_views.try_run, name="try"),
    path("api-keys/", api_views.apikey_list, name="apikey_list"),
    path("api-keys/<int:pk>/revoke/", api_views.apikey_revoke, name="apikey_revoke"),
]
