"""The one reader of environment variables, for the web app and the model workers alike.

Django-free (GPU hosts run without Django): ``cope_studio.settings`` (through
``cope_studio.lib.env``) and ``worker.config`` both read every variable through these functions,
so both sides follow the same rules:

- Values are stripped; a blank value counts as unset and gives the default.
- Booleans are ``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error.
- ``env_str``/``env_secret`` read ``NAME_FILE`` (a Docker or Kubernetes secret) when it is set;
  setting both ``NAME`` and ``NAME_FILE`` is an error.
- A malformed value raises ``EnvError`` naming the variable; nothing is silently replaced.

``.env.example`` lists every variable read through this module (``tests/test_env_example.py``
checks that by scanning the code for these calls).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from worker.base import BackendConfigError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class EnvError(BackendConfigError):
    """A malformed environment variable; the message names it and says what is expected."""


def _raw(name: str, environ: Mapping[str, str]) -> str | None:
    """The stripped value, or None when unset or blank."""
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_str(name: str, default: str = "", environ: Mapping[str, str] = os.environ) -> str:
    """A string, or the content of the file named by ``NAME_FILE`` (for secrets)."""
    direct = _raw(name, environ)
    file_name = _raw(f"{name}_FILE", environ)
    if direct is not None and file_name is not None:
        raise EnvError(f"Set {name} or {name}_FILE, not both.")
    if file_name is not None:
        try:
            content = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise EnvError(
                f"{name}_FILE={file_name!r} cannot be read: {exc.strerror or exc}"
            ) from exc
        return content or default
    return default if direct is None else direct


# A secret is a string that may come from a file; the separate name says so at the call site.
env_secret = env_str


def env_bool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise EnvError(f"{name}={value!r} is not a boolean: use true or false.")


def env_int(
    name: str,
    default: int,
    environ: Mapping[str, str] = os.environ,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise EnvError(f"{name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum:
        raise EnvError(f"{name}={number} is below the minimum {minimum}.")
    if maximum is not None and number > maximum:
        raise EnvError(f"{name}={number} is above the maximum {maximum}.")
    return number


def env_float(
    name: str,
    default: float,
    environ: Mapping[str, str] = os.environ,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise EnvError(f"{name}={value!r} is not a number.") from None
    # ``not >=`` also rejects NaN.
    if (minimum is not None and not number >= minimum) or (
        maximum is not None and not number <= maximum
    ):
        raise EnvError(f"{name}={number} is outside {minimum}–{maximum}.")
    return number


def env_choice(
    name: str, default: str, choices: tuple[str, ...], environ: Mapping[str, str] = os.environ
) -> str:
    value = (_raw(name, environ) or default).lower()
    if value not in choices:
        raise EnvError(f"{name}={value!r} is not valid; use one of: {', '.join(choices)}.")
    return value


def env_list(name: str, default: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """Comma-separated values; blank parts are dropped."""
    value = _raw(name, environ)
    if value is None:
        return list(default)
    return [part.strip() for part in value.split(",") if part.strip()]
