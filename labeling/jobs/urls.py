from django.urls import path

from labeling.jobs import list_views, views

urlpatterns = [
    path("versions/<int:version_id>/jobs/", views.job_start, name="job_start"),
    path("versions/<int:version_id>/panel/", views.version_panel, name="version_panel"),
    path("policies/<int:policy_id>/panel/", views.policy_panel, name="policy_panel"),
    path("jobs/", list_views.job_list, name="job_list"),
    path("jobs/<int:pk>/row/", list_views.job_list_row, name="job_list_row"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:pk>/resume/", views.job_resume, name="job_resume"),
    path("jobs/<int:pk>/retry/", views.job_retry, name="job_retry"),
    path("policies/<int:policy_id>/compare/", views.version_compare, name="version_compare"),
    path("policies/<int:policy_id>/settings/", views.policy_settings, name="policy_settings"),
]
