"""The default cache is one every web process sees: Redis when configured, else a database table
whose increment loses no count under contention, so the API rate limit holds across gunicorn
workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connection

from cope_studio.lib.cache import TABLE
from tests.django_process import REPO, fresh_environ, run_django


@pytest.fixture
def shared_cache(settings: Any) -> Any:
    """The embedded default's shared cache (whatever COPE_CACHE_URL says for this run)."""
    settings.CACHES = {
        **settings.CACHES,
        "shared": {"BACKEND": "cope_studio.lib.cache.SharedDatabaseCache", "LOCATION": TABLE},
    }
    cache = caches["shared"]
    cache.clear()
    return cache


@pytest.mark.django_db
def test_the_shared_cache_counts_and_forgets_expired_keys(shared_cache: Any) -> None:
    assert TABLE in connection.introspection.table_names()  # made by a migration
    assert shared_cache.add("count", 0, timeout=60)
    assert [shared_cache.incr("count") for _ in range(3)] == [1, 2, 3]
    assert shared_cache.incr("count", 10) == 13 and shared_cache.get("count") == 13
    with pytest.raises(ValueError):
        shared_cache.incr("never-set")
    shared_cache.set("gone", 5, timeout=-1)
    with pytest.raises(ValueError):
        shared_cache.incr("gone")


def test_the_default_cache_is_one_every_process_sees() -> None:
    backend = django_settings.CACHES["default"]["BACKEND"]
    assert backend in (
        "cope_studio.lib.cache.SharedDatabaseCache",
        "django.core.cache.backends.redis.RedisCache",
    )
    if not os.environ.get("COPE_CACHE_URL"):
        assert backend == "cope_studio.lib.cache.SharedDatabaseCache"


_WORKER = """
import sys, time
import django
django.setup()
from labeling.api.keys import rate_limit
from labeling.models import ApiKey
key = ApiKey.objects.get(pk=int(sys.argv[1]))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(sum(rate_limit(key) is None for _ in range(int(sys.argv[3]))))
"""

_SETUP = """
import django
django.setup()
from django.contrib.auth.models import User
from labeling.api.keys import create_key
owner = User.objects.create_superuser("rate-owner", password="x")
print(create_key(owner=owner, name="shared", scopes=["read"], by=owner).api_key.pk)
"""


def _database_env(tmp_path: Path) -> dict[str, str]:
    """A database two fresh processes can open: this run's PostgreSQL test database (its rows
    are committed by ``transactional_db``), or a migrated SQLite file (the SQLite test database
    lives in this process's memory)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        host = f"{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        return {"DATABASE_URL": f"postgresql://{host}/{db['NAME']}"}
    migrate = [sys.executable, "manage.py", "migrate", "-v0"]
    subprocess.run(migrate, env=fresh_environ({}, tmp_path), cwd=REPO, check=True, timeout=300)
    return {}


@pytest.mark.django_db(transaction=True)
def test_two_web_processes_share_one_rate_limit(tmp_path: Path) -> None:
    """Two processes hammer one key at once: together they get exactly the limit, not the limit
    each (a per-process cache) nor more (an increment that loses counts under contention)."""
    env = _database_env(tmp_path)
    # A window long enough that no boundary falls inside the test.
    env |= {"COPE_API_RATE_LIMIT": "150", "COPE_API_RATE_WINDOW": "1000000"}
    key_pk = run_django(_SETUP, env, tmp_path).stdout.split()[-1]
    start_at = str(time.time() + 4)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, key_pk, start_at, "120"],
            env=fresh_environ(env, tmp_path),
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    allowed = [int(worker.communicate(timeout=120)[0].split()[-1]) for worker in workers]
    assert all(0 < n <= 120 for n in allowed), allowed
    assert sum(allowed) == 150, allowed
