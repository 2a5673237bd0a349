from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from labeling.api.endpoints import api
from labeling.search import views as search_views

urlpatterns = [
    path("", RedirectView.as_view(url="/policies/", permanent=False)),
    # Login, logout, single sign-on and password reset
    path("", include("accounts.urls")),
    path("policies/", include("policies.urls")),
    path("labeling/", include("labeling.urls")),
    path("search/", search_views.search, name="search"),
    path("admin/", admin.site.urls),
    # The labeling API, /api/v1/ (docs at /api/v1/docs) and the compatible /v1/label
    path("", api.urls),
]

# A clear page for a form over the size limit (pasted text), not a bare 400.
handler400 = "cope_studio.lib.errors.bad_request"
