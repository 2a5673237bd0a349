"""What the COPE_OIDC_* and COPE_EMAIL_* variables set, read in a fresh process."""

from __future__ import annotations

import json
from pathlib import Path

from tests.django_process import run_django

SHOW = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "form_action": settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"],
    "issuer": settings.COPE_OIDC_ISSUER,
    "client_secret": settings.OIDC_RP_CLIENT_SECRET,
    "email_backend": settings.EMAIL_BACKEND,
    "email_tls": settings.EMAIL_USE_TLS,
    "from": settings.DEFAULT_FROM_EMAIL,
}))
"""


def _settings(env: dict[str, str], tmp_path: Path) -> dict[str, object]:
    return dict(json.loads(run_django(SHOW, env, tmp_path).stdout))


def test_defaults_have_no_single_sign_on_and_print_mail_to_the_log(tmp_path: Path) -> None:
    shown = _settings({}, tmp_path)
    assert shown["issuer"] == ""
    assert shown["form_action"] == ["'self'"]
    assert shown["email_backend"] == "django.core.mail.backends.console.EmailBackend"


def test_the_providers_origin_may_receive_the_logout_redirect(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    shown = _settings(
        {
            "COPE_OIDC_ISSUER": "https://idp.example.org/realms/studio/",
            "COPE_OIDC_CLIENT_SECRET_FILE": str(secret),
        },
        tmp_path,
    )
    assert shown["issuer"] == "https://idp.example.org/realms/studio"
    assert shown["form_action"] == ["'self'", "https://idp.example.org"]
    assert shown["client_secret"] == "from-a-file"


def test_smtp_settings_come_from_the_environment(tmp_path: Path) -> None:
    shown = _settings(
        {
            "COPE_EMAIL_BACKEND": "smtp",
            "COPE_EMAIL_STARTTLS": "true",
            "COPE_EMAIL_FROM": "Studio <studio@example.org>",
        },
        tmp_path,
    )
    assert shown["email_backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert shown["email_tls"] is True
    assert shown["from"] == "Studio <studio@example.org>"


def test_starttls_and_implicit_tls_together_are_refused(tmp_path: Path) -> None:
    result = run_django(
        SHOW, {"COPE_EMAIL_STARTTLS": "true", "COPE_EMAIL_SSL": "true"}, tmp_path, check=False
    )
    assert result.returncode != 0
    assert "COPE_EMAIL_STARTTLS or COPE_EMAIL_SSL, not both" in result.stderr
