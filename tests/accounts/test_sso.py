"""Single sign-on against a real OpenID provider (django-oauth-toolkit in its own process):
discovery, the authorization code flow with PKCE, the ID token's signature, issuer and audience,
roles from the groups claim, and logout."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from django.test import Client

from accounts import oidc
from accounts.models import ExternalIdentity
from policies.roles import ADMIN, AUTHOR, REVIEWER
from tests.accounts.conftest import (
    STUDIO,
    Flow,
    configure,
    set_provider_groups,
    signed_in_user_id,
)
from tests.conftest import PASSWORD
from tests.oidc_provider.fixture import CLIENT_ID, running_provider

pytestmark = pytest.mark.django_db


def _roles(user: User) -> set[str]:
    return set(
        user.groups.filter(name__in=[AUTHOR, REVIEWER, ADMIN]).values_list("name", flat=True)
    )


def test_login_page_offers_single_sign_on_only_when_configured(
    client: Client, settings: Any
) -> None:
    settings.COPE_OIDC_ISSUER = ""
    page = client.get("/login/").content.decode()
    assert "Sign in with" not in page
    assert 'id="id_password"' in page
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404


def test_login_page_keeps_the_local_form_beside_the_provider_button(flow: Flow) -> None:
    page = flow.client.get("/login/").content.decode()
    assert "Sign in with Test IdP" in page
    assert 'id="id_password"' in page
    assert "Forgot your password?" in page


def test_the_local_form_can_be_hidden_behind_a_link_and_still_works(
    flow: Flow, settings: Any
) -> None:
    settings.COPE_OIDC_HIDE_LOCAL_LOGIN = True
    User.objects.create_user("breakglass", password=PASSWORD)
    page = flow.client.get("/login/?next=/policies/new/").content.decode()
    assert "Sign in with Test IdP" in page
    assert 'id="id_password"' not in page
    assert 'href="/login/?local=1&amp;next=/policies/new/"' in page
    assert 'id="id_password"' in flow.client.get("/login/?local=1").content.decode()
    wrong = flow.client.post("/login/", {"username": "breakglass", "password": "nope"})
    assert 'id="id_password"' in wrong.content.decode()
    assert "Please try again" in wrong.content.decode()
    signed_in = flow.client.post("/login/", {"username": "breakglass", "password": PASSWORD})
    assert signed_in["Location"] == "/policies/"


def test_endpoints_come_from_the_issuers_discovery_document(flow: Flow) -> None:
    found = oidc.provider()
    assert found.issuer == flow.provider.issuer
    assert found.authorization_endpoint == f"{flow.provider.issuer}/authorize/"
    assert found.token_endpoint == f"{flow.provider.issuer}/token/"
    assert found.jwks_uri == f"{flow.provider.issuer}/.well-known/jwks.json"
    assert found.end_session_endpoint == f"{flow.provider.issuer}/logout/"


def test_an_unreachable_provider_sends_back_to_login_with_a_message(
    client: Client, settings: Any
) -> None:
    settings.COPE_OIDC_ISSUER = "http://127.0.0.1:9/nothing"
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    oidc._discovered.clear()
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?sso=unavailable"
    assert "cannot be reached" in client.get(response["Location"]).content.decode()


def test_the_authorization_request_carries_an_s256_pkce_challenge_and_a_nonce(flow: Flow) -> None:
    authorize = urlsplit(flow.start())
    params = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == (
        f"{flow.provider.issuer}/authorize/"
    )
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    kept = flow.client.session["oidc_states"][params["state"]]
    digest = hashlib.sha256(kept["code_verifier"].encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert params["nonce"] == kept["nonce"]


def test_the_provider_refuses_an_authorization_request_without_pkce(flow: Flow) -> None:
    """The provider the tests run requires PKCE, so a client that stopped sending it would fail
    the sign-in tests rather than pass them without it."""
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": f"{STUDIO}/oidc/callback/",
        "scope": "openid email",
        "state": "s",
        "nonce": "n",
    }
    answer = flow.provider_sign_in("alice", f"{flow.provider.issuer}/authorize/?{urlencode(query)}")
    assert answer.status_code == 302
    refused = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert refused["error"] == ["invalid_request"]
    assert "code" not in refused


def test_signing_in_creates_the_user_with_the_roles_their_groups_give(flow: Flow) -> None:
    response = flow.sign_in("alice")
    assert response.status_code == 302
    assert response["Location"] == "/policies/"
    user = User.objects.get(pk=signed_in_user_id(flow.client))
    assert user.username == "alice"
    assert user.email == "alice@example.org"
    assert _roles(user) == {AUTHOR}
    assert not user.has_usable_password()
    identity = ExternalIdentity.objects.get(user=user)
    assert identity.issuer == flow.provider.issuer
    # The studio's own pages see the role: an author may create policies, not review.
    assert flow.client.get("/policies/new/").status_code == 200
    assert flow.client.get("/labeling/review/").status_code == 403


def test_sign_in_returns_to_the_page_asked_for_on_this_site_only(flow: Flow) -> None:
    asked = flow.finish(flow.callback_url("alice", "?next=/policies/new/"))
    assert asked["Location"] == "/policies/new/"
    flow.client.post("/logout/")
    elsewhere = flow.finish(flow.callback_url("alice", "?next=https://evil.example/"))
    assert elsewhere["Location"] == "/policies/"


def test_a_reviewer_group_gives_the_reviewer_role(flow: Flow) -> None:
    flow.sign_in("rita")
    user = User.objects.get(pk=signed_in_user_id(flow.client))
    assert _roles(user) == {REVIEWER}


def test_roles_follow_the_providers_groups_at_every_sign_in(flow: Flow) -> None:
    flow.sign_in("ada")
    ada = User.objects.get(pk=signed_in_user_id(flow.client))
    assert _roles(ada) == {ADMIN, AUTHOR}
    set_provider_groups(flow.provider, "ada", ["studio-reviewers"])
    try:
        again = Flow(client=Client(), browser=requests.Session(), provider=flow.provider)
        again.sign_in("ada")
        assert signed_in_user_id(again.client) == ada.pk
        assert _roles(ada) == {REVIEWER}
    finally:
        set_provider_groups(flow.provider, "ada", ["studio-admins", "studio-authors"])


def test_a_local_account_of_the_same_name_is_not_taken_over(flow: Flow) -> None:
    local = User.objects.create_user("alice", email="alice@example.org", password=PASSWORD)
    flow.sign_in("alice")
    signed_in = User.objects.get(pk=signed_in_user_id(flow.client))
    assert signed_in.pk != local.pk
    assert signed_in.username == "alice-2"
    local.refresh_from_db()
    assert local.check_password(PASSWORD)
    assert not local.groups.exists()


def test_a_deactivated_user_cannot_sign_in_through_the_provider(flow: Flow) -> None:
    flow.sign_in("alice")
    User.objects.filter(username="alice").update(is_active=False)
    again = Flow(client=Client(), browser=requests.Session(), provider=flow.provider)
    response = again.sign_in("alice")
    assert response["Location"] == "/login/?sso=failed"
    assert signed_in_user_id(again.client) is None


def test_a_callback_cannot_be_replayed(flow: Flow) -> None:
    callback = flow.callback_url("alice")
    assert flow.finish(callback)["Location"] == "/policies/"
    flow.client.post("/logout/")
    replay = flow.finish(callback)
    assert replay["Location"] == "/login/?sso=failed"
    assert signed_in_user_id(flow.client) is None


def test_a_token_signed_with_a_key_the_provider_does_not_publish_is_refused(
    settings: Any, tmp_path: Any, db: None
) -> None:
    with running_provider(tmp_path, studio_urls=[STUDIO], rogue=True) as rogue:
        configure(settings, rogue)
        flow = Flow(client=Client(), browser=requests.Session(), provider=rogue)
        response = flow.sign_in("alice")
        assert response["Location"] == "/login/?sso=failed"
        assert "did not complete" in flow.client.get("/login/?sso=failed").content.decode()
    assert signed_in_user_id(flow.client) is None
    assert not User.objects.filter(username="alice").exists()


def _token(flow: Flow, **changes: Any) -> str:
    """An ID token signed with the provider's own key, as it would issue one, with ``changes``."""
    now = int(time.time())
    claims = {
        "iss": flow.provider.issuer,
        "aud": CLIENT_ID,
        "sub": "1",
        "iat": now,
        "exp": now + 300,
        "nonce": "n",
    }
    claims.update(changes)
    kid = requests.get(oidc.provider().jwks_uri, timeout=10).json()["keys"][0]["kid"]
    return jwt.encode(claims, flow.provider.signing_key(), algorithm="RS256", headers={"kid": kid})


def test_a_token_from_the_provider_for_this_client_is_accepted(flow: Flow) -> None:
    claims = oidc.OIDCBackend().verify_token(_token(flow), nonce="n")
    assert claims["sub"] == "1"


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-client"},
        {"iss": "http://127.0.0.1:1/o"},
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
        {"nonce": "another"},
    ],
    ids=["other-audience", "other-issuer", "expired", "other-nonce"],
)
def test_a_token_for_another_client_issuer_time_or_request_is_refused(
    flow: Flow, changes: dict[str, Any]
) -> None:
    with pytest.raises(SuspiciousOperation):
        oidc.OIDCBackend().verify_token(_token(flow, **changes), nonce="n")


def test_an_unsigned_or_shared_secret_token_is_refused(flow: Flow) -> None:
    claims = jwt.decode(_token(flow), options={"verify_signature": False})
    kid = jwt.get_unverified_header(_token(flow))["kid"]
    for token in (
        jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": kid}),
    ):
        with pytest.raises(SuspiciousOperation):
            oidc.OIDCBackend().verify_token(token, nonce="n")


def test_logout_ends_the_studio_session_and_the_providers(flow: Flow) -> None:
    flow.sign_in("alice")
    response = flow.client.post("/logout/")
    assert signed_in_user_id(flow.client) is None
    end_session = urlsplit(response["Location"])
    assert f"{end_session.scheme}://{end_session.netloc}{end_session.path}" == (
        f"{flow.provider.issuer}/logout/"
    )
    params = parse_qs(end_session.query)
    assert params["post_logout_redirect_uri"] == [f"{STUDIO}/login/"]
    assert params["id_token_hint"]
    # The browser follows it: the provider ends its session and sends it back to the studio.
    answer = flow.browser.get(response["Location"], allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"] == f"{STUDIO}/login/"
    # Signing in again asks for the provider's password again.
    again = flow.browser.get(flow.start(), allow_redirects=False)
    assert "/login/" in again.headers["Location"]


def test_a_local_account_logs_out_to_the_login_page(flow: Flow) -> None:
    User.objects.create_user("local", password=PASSWORD)
    assert flow.client.login(username="local", password=PASSWORD)
    response = flow.client.post("/logout/")
    assert response["Location"] == "/login/"
    assert signed_in_user_id(flow.client) is None


def test_local_sign_in_is_still_throttled_with_single_sign_on_on(flow: Flow, settings: Any) -> None:
    User.objects.create_user("local", password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        flow.client.post("/login/", {"username": "local", "password": "wrong"})
    locked = flow.client.post("/login/", {"username": "local", "password": PASSWORD})
    assert locked.status_code == 429
    assert signed_in_user_id(flow.client) is None
