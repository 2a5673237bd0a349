from django.urls import path

from labeling.workers import views

urlpatterns = [
    path("workers/", views.worker_list, name="workers"),
]
