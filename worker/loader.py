"""Build the configured scorer and twin writer. Heavy imports happen only for the chosen one."""

from __future__ import annotations

from worker.base import BackendConfigError, Scorer, TwinWriter
from worker.config import WorkerConfig


def _embedding_device(config: WorkerConfig) -> str:
    if config.device != "auto":
        return config.device
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_scorer(config: WorkerConfig) -> Scorer:
    """The labeler named by ``COPE_BACKEND``; ``BackendConfigError`` names what to fix."""
    if config.backend == "embedding":
        from worker.embedding import EmbeddingScorer

        return EmbeddingScorer.load(config.embedding_model, device=_embedding_device(config))
    if config.backend == "openai":
        from worker.openai_backend import OpenAIClient, OpenAICompletionsScorer

        if not config.openai_base_url:
            raise BackendConfigError(
                "COPE_BACKEND=openai needs COPE_OPENAI_BASE_URL (e.g. http://gpu-host:8000/v1)."
            )
        client = OpenAIClient(
            config.openai_base_url,
            api_key=config.openai_api_key,
            timeout=config.openai_timeout,
            max_retries=config.openai_max_retries,
        )
        return OpenAICompletionsScorer(
            client,
            config.openai_model,
            batch_size=config.openai_batch_size,
            logprobs=config.openai_logprobs,
        )
    if config.backend == "cope":
        try:
            from worker.cope import load_cope
        except ImportError as exc:
            raise BackendConfigError(
                f"COPE_BACKEND=cope needs the worker extra (torch, transformers, peft): {exc}"
            ) from exc
        return load_cope(
            base_model=config.base_model,
            adapter=config.adapter or None,
            merged_path=config.merged_model or None,
            quantization=config.quantization,
            device=config.device,
            hf_token=config.hf_token or None,
            max_batch_tokens=config.max_batch_tokens,
            max_batch_size=config.max_batch_size,
            context_limit=config.context_limit,
        )
    raise BackendConfigError(f"COPE_BACKEND={config.backend!r} is not a known backend.")


def load_twin_writer(config: WorkerConfig) -> TwinWriter | None:
    """The twin generator named by ``COPE_TWIN_BACKEND``; ``None`` when it is ``none``."""
    if config.twin_backend == "none":
        return None
    if config.twin_backend == "openai":
        from worker.openai_backend import OpenAIChatTwinWriter, OpenAIClient

        if not config.twin_base_url:
            raise BackendConfigError(
                "COPE_TWIN_BACKEND=openai needs COPE_TWIN_BASE_URL (e.g. http://llm-host:8000/v1)."
            )
        client = OpenAIClient(
            config.twin_base_url,
            api_key=config.twin_api_key,
            timeout=max(config.openai_timeout, 300.0),
            max_retries=config.openai_max_retries,
        )
        return OpenAIChatTwinWriter(
            client, config.twin_openai_model, temperature=config.twin_temperature
        )
    if config.twin_backend == "transformers":
        from worker.twin import TransformersChatTwinWriter

        return TransformersChatTwinWriter(
            config.twin_model,
            device=config.device,
            token=config.hf_token,
            temperature=config.twin_temperature,
        )
    raise BackendConfigError(f"COPE_TWIN_BACKEND={config.twin_backend!r} is not known.")
