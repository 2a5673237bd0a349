from django.urls import path

from labeling.whatif import views
from labeling.whatif.suggest_views import suggest_urlpatterns

urlpatterns = [
    path("versions/<int:version_id>/whatif/", views.whatif_form, name="whatif"),
    path("versions/<int:version_id>/whatif/card/", views.whatif_card, name="whatif_card"),
    path("whatif/<int:run_id>/", views.whatif_run, name="whatif_run"),
    path("whatif/<int:run_id>/cancel/", views.whatif_cancel, name="whatif_cancel"),
    path("whatif/<int:run_id>/make/", views.whatif_make_version, name="whatif_make_version"),
    *suggest_urlpatterns,
]
