from django.urls import path

from labeling.samples import views

urlpatterns = [
    path("samples/", views.sampleset_list, name="sampleset_list"),
    path("samples/import/", views.sampleset_import, name="sampleset_import"),
    path("samples/import/<str:token>/", views.sampleset_preview, name="sampleset_preview"),
    path("samples/<int:pk>/", views.sampleset_detail, name="sampleset_detail"),
    path("samples/<int:pk>/archive/", views.sampleset_archive, name="sampleset_archive"),
    path("samples/<int:pk>/restore/", views.sampleset_restore, name="sampleset_restore"),
]
