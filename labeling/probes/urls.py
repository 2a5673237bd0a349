from django.urls import path

from labeling.probes import views

urlpatterns = [
    path("versions/<int:version_id>/probe/", views.probe_detail, name="probe"),
    path("versions/<int:version_id>/probe/card/", views.probe_card, name="probe_card"),
]
