from django.urls import path, re_path

from policies import views

app_name = "policies"

urlpatterns = [
    path("", views.policy_list, name="list"),
    path("new/", views.policy_create, name="create"),
    path("lint/", views.editor_lint, name="lint"),
    path("<int:pk>/", views.policy_detail, name="detail"),
    path("<int:pk>/versions/new/", views.version_create, name="version_create"),
    path("<int:pk>/diff/", views.policy_diff, name="diff"),
    path("versions/<int:pk>/", views.version_detail, name="version"),
    path("versions/<int:pk>/twin/", views.twin_update, name="twin_update"),
    re_path(
        r"^versions/(?P<pk>[0-9]+)/export\.(?P<fmt>md|json)$",
        views.version_export,
        name="version_export",
    ),
    path("versions/<int:pk>/twin/generate/", views.twin_generate, name="twin_generate"),
    path("versions/<int:pk>/twin/diff/", views.twin_diff, name="twin_diff"),
    path("twin-jobs/<int:pk>/", views.twinjob_status, name="twinjob"),
]
