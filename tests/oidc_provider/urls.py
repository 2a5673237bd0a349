from __future__ import annotations

import json
import os

from django.contrib.auth import views as auth_views
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from jwcrypto import jwk
from oauth2_provider.settings import oauth2_settings

from tests.oidc_provider.settings import STATE


def jwks(request: HttpRequest) -> JsonResponse:
    """The provider's key set. With PROVIDER_ROGUE_JWKS set it publishes another key under the
    signing key's id: tokens are then signed with a key the set does not hold."""
    signing = jwk.JWK.from_pem(oauth2_settings.OIDC_RSA_PRIVATE_KEY.encode())
    published = signing
    if os.environ.get("PROVIDER_ROGUE_JWKS"):
        published = jwk.JWK.from_pem((STATE / "other.pem").read_bytes())
    data = {"alg": "RS256", "use": "sig", "kid": signing.thumbprint()}
    data.update(json.loads(published.export_public()))
    return JsonResponse({"keys": [data]})


@csrf_exempt
def set_groups(request: HttpRequest, username: str) -> HttpResponse:
    """The IdP administrator's move: the test changes a user's groups between sign-ins."""
    names = json.loads(request.body)
    user = User.objects.get(username=username)
    user.groups.set([Group.objects.get_or_create(name=n)[0] for n in names])
    return HttpResponse(status=204)


urlpatterns = [
    path("test/groups/<str:username>/", set_groups),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("o/.well-known/jwks.json", jwks),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
]
