from django.urls import path, re_path

from labeling.release import views

urlpatterns = [
    path("versions/<int:version_id>/finalize/", views.finalize_view, name="finalize"),
    path("versions/<int:version_id>/finalize/panel/", views.finalize_panel, name="finalize_panel"),
    re_path(
        r"^versions/(?P<version_id>[0-9]+)/export\.(?P<fmt>md|twin\.md|csv)$",
        views.version_export,
        name="version_export",
    ),
    re_path(
        r"^policies/(?P<policy_id>[0-9]+)/export\.(?P<fmt>json|jsonl)$",
        views.policy_export,
        name="policy_export",
    ),
]
