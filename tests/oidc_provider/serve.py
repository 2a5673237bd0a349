"""Runs the test provider: ``python -m tests.oidc_provider.serve PORT`` with ``PROVIDER_STATE_DIR``
holding ``signing.pem`` (and ``other.pem``) and ``setup.json`` (client and users). Prints
``ready`` once it answers."""

from __future__ import annotations

import json
import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402

from tests.oidc_provider.settings import STATE  # noqa: E402


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def set_up(setup: dict[str, object]) -> None:
    call_command("migrate", verbosity=0)
    for spec in setup["users"]:  # type: ignore[attr-defined]
        user = User.objects.create_user(
            spec["username"], email=spec["email"], password=spec["password"]
        )
        user.groups.set([Group.objects.get_or_create(name=n)[0] for n in spec["groups"]])
    Application.objects.create(
        name="CoPE Studio",
        client_id=setup["client_id"],
        client_secret=setup["client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(setup["redirect_uris"]),  # type: ignore[arg-type]
        post_logout_redirect_uris=" ".join(setup["post_logout_redirect_uris"]),  # type: ignore[arg-type]
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )


def main() -> None:
    port = int(sys.argv[1])
    set_up(json.loads((STATE / "setup.json").read_text()))
    server = make_server(
        "127.0.0.1", port, get_wsgi_application(), ThreadingServer, handler_class=QuietHandler
    )
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
