"""The pages of the API feature (the Try box, API keys). The JSON API itself is mounted at the
site's root by ``cope_studio.urls`` (``labeling.api.endpoints.api``)."""

from django.urls import path

from labeling.api import views

urlpatterns = [
    path("try/", views.try_run, name="try"),
    path("api-keys/", views.apikey_list, name="apikey_list"),
    path("api-keys/<int:pk>/revoke/", views.apikey_revoke, name="apikey_revoke"),
]
