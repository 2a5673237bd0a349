"""Starts the test provider (``serve.py``) as a process on a free port, with RSA keys made here.

``rogue=True`` makes it publish a key other than the one it signs with, under the same key id:
a client that checks signatures must refuse its tokens."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID = "cope-studio"
CLIENT_SECRET = "test-client-secret"
PASSWORD = "provider password 123"
# Provider users and their groups; the studio maps "studio-authors" etc. to its roles.
USERS = {
    "alice": {"email": "alice@example.org", "groups": ["studio-authors", "everyone"]},
    "rita": {"email": "rita@example.org", "groups": ["studio-reviewers"]},
    "ada": {"email": "ada@example.org", "groups": ["studio-admins", "studio-authors"]},
}
ROLE_GROUPS = {
    "COPE_OIDC_AUTHOR_GROUP": "studio-authors",
    "COPE_OIDC_REVIEWER_GROUP": "studio-reviewers",
    "COPE_OIDC_ADMIN_GROUP": "studio-admins",
}


@dataclass(frozen=True)
class RunningProvider:
    url: str
    state: Path  # signing.pem, the key its tokens are signed with

    def signing_key(self) -> str:
        return (self.state / "signing.pem").read_text()

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_provider(
    state: Path, *, studio_urls: list[str], rogue: bool = False
) -> Iterator[RunningProvider]:
    """A provider whose client accepts the studio at each of ``studio_urls`` (the test client's
    http://testserver, a live server's address)."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "signing.pem").write_text(_pem())
    (state / "other.pem").write_text(_pem())
    setup = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{url}/oidc/callback/" for url in studio_urls],
        "post_logout_redirect_uris": [f"{url}/login/" for url in studio_urls],
        "users": [{"username": name, "password": PASSWORD, **spec} for name, spec in USERS.items()],
    }
    (state / "setup.json").write_text(json.dumps(setup))
    port = _free_port()
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("COPE_", "DATABASE_", "DJANGO_"))
    }
    environ |= {"PYTHONPATH": str(REPO), "PROVIDER_STATE_DIR": str(state)}
    if rogue:
        environ["PROVIDER_ROGUE_JWKS"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.oidc_provider.serve", str(port)],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        if line.strip() != "ready":
            rest = process.stdout.read() if process.poll() is not None else ""
            raise RuntimeError(f"the test provider did not start: {line}{rest}")
        yield RunningProvider(url=f"http://127.0.0.1:{port}", state=state)
    finally:
        process.terminate()
        process.wait(timeout=10)
