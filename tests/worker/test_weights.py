"""``python -m worker fetch / check / merge / serve`` against tiny models saved by the test: a
"hub id" may be a local directory, or an id found in a Hugging Face cache laid out like the
hub's; missing weights are one line and a non-zero exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tests.worker.tiny_models import TinyCope, random_policy, random_text  # noqa: E402
from worker import __main__ as cli  # noqa: E402
from worker.base import BackendConfigError  # noqa: E402
from worker.config import WorkerConfig  # noqa: E402
from worker.weights import merge, prepare  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("COPE_", "HF_"))},
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _cope_config(**changes: Any) -> WorkerConfig:
    return replace(WorkerConfig(), backend="cope", device="cpu", **changes)


def _as_hub_cache(cache: Path, repo_id: str, source: Path) -> None:
    """Lay ``source`` out as huggingface_hub stores a download of ``repo_id``."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(source, folder / "snapshots" / commit)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)


def test_fetch_verifies_local_base_and_adapter(tiny_cope: TinyCope) -> None:
    result = _run(
        ["fetch"],
        {
            "COPE_BACKEND": "cope",
            "COPE_BASE_MODEL": str(tiny_cope.base),
            "COPE_ADAPTER": str(tiny_cope.adapter),
        },
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"ok  COPE_BASE_MODEL={tiny_cope.base}")
    assert lines[1].startswith(f"ok  COPE_ADAPTER={tiny_cope.adapter}")


def test_check_finds_hub_ids_in_the_hf_cache_without_the_network(
    tiny_cope: TinyCope, tmp_path: Path
) -> None:
    cache = tmp_path / "hub"
    _as_hub_cache(cache, "tiny-org/tiny-base", tiny_cope.base)
    _as_hub_cache(cache, "tiny-org/tiny-adapter", tiny_cope.adapter)
    env = {
        "HF_HUB_CACHE": str(cache),
        "COPE_BACKEND": "cope",
        "COPE_BASE_MODEL": "tiny-org/tiny-base",
        "COPE_ADAPTER": "tiny-org/tiny-adapter",
    }
    for command in ("check", "fetch"):  # offline, fetch finds them cached
        result = _run([command], env)
        assert result.returncode == 0, result.stderr
        assert "ok  COPE_BASE_MODEL=tiny-org/tiny-base" in result.stdout
        assert "ok  COPE_ADAPTER=tiny-org/tiny-adapter" in result.stdout


@pytest.mark.parametrize("command", ["serve", "fetch", "check"])
def test_missing_weights_are_one_line_and_a_non_zero_exit(command: str, tmp_path: Path) -> None:
    result = _run(
        [command],
        {
            "HF_HUB_CACHE": str(tmp_path / "empty"),
            "COPE_BACKEND": "cope",
            "COPE_BASE_MODEL": "nobody/does-not-exist",
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # serve must stop before Celery
        },
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "COPE_BASE_MODEL='nobody/does-not-exist' is not in the Hugging Face cache" in lines[0]
    if command != "fetch":
        assert "python -m worker fetch" in lines[0]


def test_a_truncated_weight_file_is_caught(tiny_cope: TinyCope, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_cope.merged, broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BackendConfigError, match="cannot be read"):
        prepare(_cope_config(merged_model=str(broken)), download=False)


def test_merge_writes_a_model_that_scores_like_base_plus_adapter(
    tiny_cope: TinyCope, tmp_path: Path
) -> None:
    from worker.cope import load_cope

    config = _cope_config(base_model=str(tiny_cope.base), adapter=str(tiny_cope.adapter))
    out = merge(config, tmp_path / "merged", dtype="float32")
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert prepare(_cope_config(merged_model=str(out)), download=False)[0].path == out

    rng = __import__("random").Random(3)
    policy = random_policy(rng, 80)
    contents = [random_text(rng, 12) for _ in range(5)]
    ours = load_cope(merged_path=str(out), device="cpu").score(policy, contents)
    ref = load_cope(
        base_model=str(tiny_cope.base), adapter=str(tiny_cope.adapter), device="cpu"
    ).score(policy, contents)
    assert max(abs((a.p1 or 0) - (b.p1 or 0)) for a, b in zip(ours, ref, strict=True)) < 1e-5

    with pytest.raises(BackendConfigError, match="not empty"):
        merge(config, out)
    with pytest.raises(BackendConfigError, match="nothing to merge"):
        merge(replace(config, adapter=""), tmp_path / "other")


def test_serve_checks_then_runs_the_worker_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.celery_app import celery_worker_argv

    ran: list[list[str]] = []

    def fake_exec(file: str, argv: list[str]) -> None:
        ran.append(argv)

    monkeypatch.setenv("COPE_BACKEND", "openai")  # nothing on disk to check
    monkeypatch.setattr(cli.os, "execvp", fake_exec)
    cli.main(["serve", "--", "-n", "gpu@%h"])
    assert ran == [celery_worker_argv() + ["-n", "gpu@%h"]]
