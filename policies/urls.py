from django.urls import path

from policies import views

app_name = "policies"

urlpatterns = [
    path("", views.policy_list, name="list"),
    path("new/", views.policy_create, name="create"),
    path("import/", views.policy_import, name="import"),
    path("lint/", views.editor_lint, name="lint"),
    path("<int:pk>/", views.policy_detail, name="detail"),
    path("<int:pk>/versions/new/", views.version_create, name="version_create"),
    path("<int:pk>/diff/", views.policy_diff, name="diff"),
    path("<int:pk>/archive/", views.policy_archive, name="archive"),
    path("<int:pk>/restore/", views.policy_restore, name="restore"),
    path("versions/<int:pk>/", views.version_detail, name="version"),
    path("versions/<int:pk>/twin/", views.twin_update, name="twin_update"),
    path("versions/<int:pk>/twin/generate/", views.twin_generate, name="twin_generate"),
    path("versions/<int:pk>/twin/diff/", views.twin_diff, name="twin_diff"),
    path("twin-jobs/<int:pk>/", views.twinjob_status, name="twinjob"),
]
