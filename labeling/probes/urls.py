from django.urls import path

from labeling.probes import views
from labeling.probes.llm_views import llm_urlpatterns

urlpatterns = [
    path("versions/<int:version_id>/probe/", views.probe_detail, name="probe"),
    path("versions/<int:version_id>/probe/card/", views.probe_card, name="probe_card"),
    *llm_urlpatterns,
]
