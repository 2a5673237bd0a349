"""Settings for mypy's django-stubs plugin only (pyproject.toml): the real settings, with a
throwaway secret key when none is set, so `mypy` runs without any environment. Never used to
serve: the key it sets is refused by cope_studio.wsgi."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "typecheck-only")

from cope_studio.settings import *  # noqa: E402, F403
