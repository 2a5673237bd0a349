"""Single sign-on over OpenID Connect, on mozilla-django-oidc.

Configured by the issuer alone (``COPE_OIDC_ISSUER``): its discovery document
(``/.well-known/openid-configuration``) names the endpoints and the key set, read on first use
and kept for an hour. Sign-in is the authorization code flow with PKCE (S256) and a nonce; the ID
token must be RS256, signed by a key the provider's key set publishes, issued by that issuer
for this client, and unexpired. Anything else is refused and the person is sent back to the
login page.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.services import sign_in_external
from cope_studio.lib.auth import load_user

logger = logging.getLogger(__name__)

DISCOVERY_SECONDS = 3600


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be read or does not describe it."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str  # "" when the provider has none


_discovered: dict[str, tuple[float, Provider]] = {}


def enabled() -> bool:
    return bool(settings.COPE_OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def provider() -> Provider:
    """The configured provider's endpoints, from its discovery document (kept an hour)."""
    issuer = str(settings.COPE_OIDC_ISSUER)
    kept = _discovered.get(issuer)
    if kept is not None and time.monotonic() - kept[0] < DISCOVERY_SECONDS:
        return kept[1]
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        doc = response.json()
        found = Provider(
            issuer=str(doc["issuer"]),
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            userinfo_endpoint=str(doc["userinfo_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            end_session_endpoint=str(doc.get("end_session_endpoint") or ""),
        )
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise ProviderUnavailable(f"{url}: {exc}") from exc
    # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was read
    # from; tokens are then checked against exactly that value.
    if found.issuer.rstrip("/") != issuer:
        raise ProviderUnavailable(f"{url} names issuer {found.issuer!r}, not {issuer!r}")
    _discovered[issuer] = (time.monotonic(), found)
    return found


# mozilla-django-oidc ships no type hints.
class OIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """mozilla-django-oidc's backend with endpoints from discovery, the audience and issuer of
    the ID token checked (the library checks neither), and people matched on their subject."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django builds every backend for every sign-in, local ones too: nothing is fetched here.
        self.UserModel = get_user_model()
        self.OIDC_RP_SIGN_ALGO = "RS256"
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.OIDC_RP_CLIENT_ID = str(settings.OIDC_RP_CLIENT_ID)
        self.OIDC_RP_CLIENT_SECRET = str(settings.OIDC_RP_CLIENT_SECRET)

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802 - the library's attribute names
        return provider().token_endpoint

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:  # noqa: N802
        return provider().userinfo_endpoint

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:  # noqa: N802
        return provider().jwks_uri

    def get_user(self, user_id: Any) -> Any:
        # The request's user with their permissions, as for a local sign-in (lib.auth).
        return load_user(user_id)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        # Only the callback passes a PKCE verifier; a password sign-in never reaches the provider.
        if request is None or not enabled() or kwargs.get("code_verifier") is None:
            return None
        return super().authenticate(request, **kwargs)

    def _verify_jws(self, payload: str, key: Any) -> dict[str, Any]:
        try:
            if jwt.get_unverified_header(payload).get("alg") != "RS256":
                raise SuspiciousOperation("The ID token is not signed with RS256.")
            claims: dict[str, Any] = jwt.decode(
                payload,
                key,
                algorithms=["RS256"],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=provider().issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"The ID token was refused: {exc}") from exc
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        # OpenID Connect Core 1.0, 5.3.2: userinfo about anyone else must not be used.
        if str(userinfo.get("sub")) != str(payload["sub"]):
            raise SuspiciousOperation("The userinfo answer is about another subject.")
        return sign_in_external(issuer=str(payload["iss"]), claims={**payload, **userinfo})


def _back_to_login(reason: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(f"{reverse('login')}?{urlencode({'sso': reason})}")


class AuthenticateView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """Sends the browser to the provider (state, nonce and a PKCE challenge kept in the
    session)."""

    def __init__(self, **kwargs: Any) -> None:
        # The library reads the endpoint when the view is built; ours comes from discovery.
        View.__init__(self, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider().authorization_endpoint
        except ProviderUnavailable as exc:
            logger.warning("Single sign-on provider unavailable: %s", exc)
            return _back_to_login("unavailable")
        self.OIDC_RP_CLIENT_ID = str(settings.OIDC_RP_CLIENT_ID)
        response: HttpResponse = super().get(request)
        return response


class CallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    """The provider's answer: the code is exchanged, the ID token checked, the person signed in;
    a refusal (bad signature, wrong issuer or audience, replayed state, provider down) logs why
    and sends them back to the login page."""

    @property
    def failure_url(self) -> str:
        return f"{reverse('login')}?sso=failed"

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            response: HttpResponse = super().get(request)
        except (SuspiciousOperation, ProviderUnavailable, requests.RequestException) as exc:
            logger.warning("Single sign-on refused: %s", exc)
            return _back_to_login("failed")
        return response


def provider_logout_url(request: HttpRequest) -> str:
    """Where logging out goes: the provider's end-session endpoint for a person who signed in
    through it (so the provider's session ends too), else the login page."""
    login = reverse("login")
    id_token = request.session.get("oidc_id_token")
    if not id_token or not enabled():
        return login
    try:
        end_session = provider().end_session_endpoint
    except ProviderUnavailable:
        return login
    if not end_session:
        return login
    query = urlencode(
        {
            "id_token_hint": id_token,
            "client_id": settings.OIDC_RP_CLIENT_ID,
            "post_logout_redirect_uri": request.build_absolute_uri(login),
        }
    )
    return f"{end_session}?{query}"
