"""Worker test setup: never reach a model hub; tiny CoPE models built once per session."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, which reads these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

if TYPE_CHECKING:
    from tests.worker.tiny_models import TinyCope


@pytest.fixture(scope="session")
def tiny_cope(tmp_path_factory: pytest.TempPathFactory) -> TinyCope:
    """Base Gemma2, random LoRA adapter and pre-merged model (tokenizer in each), ~3 s."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from tests.worker.tiny_models import build_tiny_cope

    # Tiny models gain nothing from intra-op threads, and spinning OpenMP threads make these
    # tests ~7x slower when the machine is busy (parallel test runs, CI neighbours).
    torch.set_num_threads(1)

    return build_tiny_cope(Path(tmp_path_factory.mktemp("tiny_cope")))
