"""Model weights on a worker host: fetch them ahead of time, check them before serving, merge.

``python -m worker fetch`` downloads every model the configured worker needs (CoPE's base and
adapter, or a merged model; the twin model when ``COPE_TWIN_BACKEND=transformers``; the
embedding model of the baseline) into the Hugging Face cache, with ``HF_TOKEN`` for gated ones,
and then reads each back (config, tokenizer, weight file headers), so a GPU host can be prepared
before it joins. ``check`` does the same without downloading: ``python -m worker serve`` runs it
first, so a worker whose weights are missing says so in one line and exits instead of failing
every task. Each setting may be a hub id or a local directory.

``merge`` folds the LoRA adapter into the base once and saves a plain model directory, for
servers that cannot apply the adapter themselves (vLLM serving CoPE behind ``COPE_BACKEND=openai``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.base import BackendConfigError
from worker.config import WorkerConfig

# Files a worker never reads: other formats of the same weights (Gemma's repo carries a 36 GB
# GGUF next to the safetensors).
IGNORE_PATTERNS = ["*.gguf", "*.pth", "original/*", "*.msgpack", "*.h5", "*.onnx", "*.tflite"]


@dataclass(frozen=True)
class ModelNeed:
    """One model a worker loads: the setting that names it, its value and what it is."""

    setting: str
    value: str
    kind: str  # "model" (config + tokenizer + weights), "adapter" (LoRA), "embedding"


@dataclass(frozen=True)
class ModelReady:
    need: ModelNeed
    path: Path
    files: int
    size_bytes: int

    def line(self) -> str:
        size = f"{self.size_bytes / 1e9:.2f} GB" if self.size_bytes >= 1e8 else "< 0.1 GB"
        return (
            f"ok  {self.need.setting}={self.need.value}  ({self.files} files, {size}) {self.path}"
        )


def required_models(config: WorkerConfig) -> list[ModelNeed]:
    """What the configured backend and twin writer load from disk (nothing for ``openai``)."""
    needs: list[ModelNeed] = []
    if config.backend == "cope":
        if config.merged_model:
            needs.append(ModelNeed("COPE_MERGED_MODEL", config.merged_model, "model"))
        else:
            if not config.base_model:
                raise BackendConfigError(
                    "Set COPE_MERGED_MODEL, or COPE_BASE_MODEL (with COPE_ADAPTER)."
                )
            needs.append(ModelNeed("COPE_BASE_MODEL", config.base_model, "model"))
            if config.adapter:
                needs.append(ModelNeed("COPE_ADAPTER", config.adapter, "adapter"))
    elif config.backend == "embedding":
        needs.append(ModelNeed("COPE_EMBEDDING_MODEL", config.embedding_model, "embedding"))
    if config.twin_backend == "transformers":
        if not config.twin_model:
            raise BackendConfigError("COPE_TWIN_BACKEND=transformers needs COPE_TWIN_MODEL.")
        needs.append(ModelNeed("COPE_TWIN_MODEL", config.twin_model, "model"))
    return needs


def _is_local(value: str) -> bool:
    """A path rather than a hub id (``org/name``); the same rule as ``worker.cope``."""
    if Path(value).expanduser().exists():
        return True
    return value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1


def locate(need: ModelNeed, *, token: str, download: bool) -> Path:
    """The directory holding ``need``: a local path, or its snapshot in the HF cache."""
    if _is_local(need.value):
        path = Path(need.value).expanduser()
        if not path.is_dir():
            raise BackendConfigError(
                f"{need.setting}={need.value!r} is not a directory on this host."
            )
        return path
    from huggingface_hub import errors as hub
    from huggingface_hub import snapshot_download

    try:
        found = snapshot_download(
            need.value,
            token=token or None,
            local_files_only=not download,
            ignore_patterns=IGNORE_PATTERNS,
        )
    except hub.GatedRepoError:
        what = "the HF_TOKEN given has no access" if token else "set HF_TOKEN (a read token)"
        raise BackendConfigError(
            f"{need.setting}={need.value!r} is gated: accept its licence on huggingface.co "
            f"and {what}."
        ) from None
    except hub.RepositoryNotFoundError:
        hint = "check the id" if token else "check the id, or set HF_TOKEN if it is private"
        raise BackendConfigError(
            f"{need.setting}={need.value!r} is not on the Hugging Face hub or needs "
            f"authorization: {hint}."
        ) from None
    except (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled, FileNotFoundError) as exc:
        if download:
            reason = "the hub cannot be reached from this host (or HF_HUB_OFFLINE=1 is set)"
        else:
            reason = "run `python -m worker fetch` (with HF_TOKEN) on this host first"
        raise BackendConfigError(
            f"{need.setting}={need.value!r} is not in the Hugging Face cache "
            f"({_cache_dir()}): {reason}."
        ) from exc
    except (OSError, ValueError) as exc:
        raise BackendConfigError(f"{need.setting}={need.value!r} cannot be fetched: {exc}") from exc
    return Path(found)


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def verify(need: ModelNeed, path: Path) -> ModelReady:
    """Read back what loading needs: config, tokenizer, and every weight file's header."""
    where = f"{need.setting}={need.value!r} ({path})"
    config_name = "adapter_config.json" if need.kind == "adapter" else "config.json"
    try:
        json.loads((path / config_name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendConfigError(f"{where}: {config_name} cannot be read: {exc}") from exc
    safetensors = sorted(path.rglob("*.safetensors"))
    others = sorted(path.rglob("*.bin"))
    if not safetensors and not others:
        raise BackendConfigError(f"{where}: no weight files (*.safetensors or *.bin).")
    from safetensors import safe_open

    for file in safetensors:
        try:
            with safe_open(str(file), framework="pt") as weights:
                if not list(weights.keys()):
                    raise BackendConfigError(f"{where}: {file.name} holds no tensors.")
        except BackendConfigError:
            raise
        except Exception as exc:  # a truncated download, a disk error
            raise BackendConfigError(f"{where}: {file.name} cannot be read: {exc}") from exc
    if need.kind == "model":
        from transformers import AutoTokenizer

        try:
            AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:
            raise BackendConfigError(f"{where}: its tokenizer cannot be loaded: {exc}") from exc
    files = [f for f in path.rglob("*") if f.is_file()]
    # Hub snapshots are symlinks into the blob store: count the bytes they point to.
    size = sum(f.resolve().stat().st_size for f in files)
    return ModelReady(need, path, len(files), size)


def prepare(config: WorkerConfig, *, download: bool) -> list[ModelReady]:
    """Fetch (or only find) and verify every model the worker needs; the first problem raises."""
    return [
        verify(need, locate(need, token=config.hf_token, download=download))
        for need in required_models(config)
    ]


def merge(config: WorkerConfig, out: Path, *, dtype: str = "bfloat16") -> Path:
    """Merge ``COPE_ADAPTER`` into ``COPE_BASE_MODEL`` and save model + tokenizer to ``out``.

    Runs on the CPU unless ``COPE_DEVICE=cuda`` (a 9B model needs ~40 GB of RAM in fp32, ~20 GB
    in bf16). The merge happens in full precision, never on a quantized base (which moves the
    probabilities, see DESIGN). Written to a temporary sibling, then renamed: a failed merge
    leaves no half-written directory for a server to pick up.
    """
    if not config.adapter:
        raise BackendConfigError("COPE_ADAPTER is empty: there is nothing to merge.")
    if out.exists() and any(out.iterdir()):
        raise BackendConfigError(f"--out {out} exists and is not empty; choose a new directory.")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in dtypes:
        raise BackendConfigError(f"--dtype {dtype!r}: use one of {', '.join(dtypes)}.")
    token = config.hf_token or None
    base_need = ModelNeed("COPE_BASE_MODEL", config.base_model, "model")
    adapter_need = ModelNeed("COPE_ADAPTER", config.adapter, "adapter")
    base_path = locate(base_need, token=config.hf_token, download=False)
    adapter_path = locate(adapter_need, token=config.hf_token, download=False)
    device = "cuda" if config.device == "cuda" else "cpu"
    kwargs: dict[str, Any] = {"dtype": dtypes[dtype], "attn_implementation": "eager"}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    tokenizer = AutoTokenizer.from_pretrained(str(base_path), token=token)
    model: Any = AutoModelForCausalLM.from_pretrained(str(base_path), token=token, **kwargs)
    model = PeftModel.from_pretrained(model, str(adapter_path), token=token)
    model = model.merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "cope_merge.json").write_text(
            json.dumps(
                {"base_model": config.base_model, "adapter": config.adapter, "dtype": dtype},
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
