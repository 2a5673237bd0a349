"""The web side's names for ``worker.env``, the one environment reader of the project.

Same functions, same rules (blanks, booleans, ``NAME_FILE`` secrets); a malformed value raises
Django's ``ImproperlyConfigured`` here, so ``manage.py`` and gunicorn stop with the variable's
name. Only ``cope_studio.settings`` calls these.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.core.exceptions import ImproperlyConfigured

from worker import env as _env

P = ParamSpec("P")
T = TypeVar("T")


def _django_error(fn: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(fn)
    def read(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except _env.EnvError as exc:
            raise ImproperlyConfigured(str(exc)) from exc

    return read


env_str = _django_error(_env.env_str)
env_secret = _django_error(_env.env_secret)
env_bool = _django_error(_env.env_bool)
env_int = _django_error(_env.env_int)
env_float = _django_error(_env.env_float)
env_choice = _django_error(_env.env_choice)
env_list = _django_error(_env.env_list)
