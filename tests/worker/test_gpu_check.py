"""bin/gpu-check in its CPU mode (every step at a small shape), its targets, and the what-if
bench policies it builds.

The GPU run executes exactly these code paths with bigger numbers, so CI checks what the device
check will run before any GPU time is spent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from worker.bench import Bench, build_shape_bench  # noqa: E402
from worker.bench_attribution import attribution_policy  # noqa: E402
from worker.bench_probe_shape import reword, whatif_inputs, whatif_policies  # noqa: E402
from worker.clauses import align_clauses, parse_clauses  # noqa: E402
from worker.gpu_check import TINY, judge  # noqa: E402
from worker.probes import build_probe_variants  # noqa: E402
from worker.variants import distinct  # noqa: E402

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # see tests/worker/conftest.py: spinning threads on a busy machine


def _script_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def _tiny_policy() -> tuple[Bench, str]:
    bench = build_shape_bench(
        TINY.shape,
        device=torch.device("cpu"),
        dtype=torch.float32,
        max_batch_size=8,
        max_batch_tokens=65536,
    )
    policy = attribution_policy(
        bench, policy_tokens=TINY.attribution_policy_tokens, clauses=TINY.attribution_clauses
    )
    return bench, policy


def _tiny_probe_variants() -> int:
    """The distinct probe variants of the policy the tiny plan builds, counted here."""
    _, policy = _tiny_policy()
    return len(distinct(build_probe_variants(policy)))


def test_targets_are_judged_against_the_measured_figures() -> None:
    good = {
        "runs": [
            {
                "batch_sizes": [
                    {"share_of_peak": 0.2, "max_abs_diff": 1e-4},
                    {"share_of_peak": 0.41, "max_abs_diff": 5e-4},
                ],
                "latency_warm": {"p95_ms": 31.0},
            }
        ],
        "whatif": {"model_seconds": 3.2},
    }
    assert judge(good) == {
        "share of peak >= 35%": "41.0% met",
        "p95 < 50 ms": "31.0 ms met",
        "|dp1| <= 1e-3": "5.0e-04 met",
        "what-if model time < 5 s": "3.2 s met",
    }
    bad = {
        "runs": [
            {
                "batch_sizes": [{"share_of_peak": 0.3, "max_abs_diff": 2e-3}],
                "latency_warm": {"p95_ms": 80.0},
            }
        ],
        "whatif": {"model_seconds": 5.0},
    }
    judged = judge(bad)
    assert len(judged) == 4 and all(value.endswith("MISSED") for value in judged.values())
    assert "what-if model time < 5 s" not in judge({"whatif": {"error": "RuntimeError: x"}})


def test_gpu_check_tiny_on_cpu_writes_json_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "gpu-check"), "--tiny", "--device", "cpu", str(out)],
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["mode"] == "tiny" and report["shape"] == "gemma-2-mini"
    assert "failed_steps" not in report
    assert report["environment"]["torch"] == torch.__version__
    assert report["build"]["parameters"] == report["build"]["parameters_from_config"]
    assert [run["policy_tokens_asked"] for run in report["runs"]] == [150, 200]
    for run in report["runs"]:
        assert [row["batch_size"] for row in run["batch_sizes"]] == [1, 4]
        assert all(row["max_abs_diff"] <= 1e-5 for row in run["batch_sizes"])
        assert run["latency_warm"]["requests"] == run["latency_cold"]["requests"] == 3
    assert "needs CUDA" in report["oom_halving"]["skipped"]
    for quantization in ("8bit", "4bit"):
        step = report["quantization"][quantization]
        assert step["loaded"] is False and step["ok"] is True
        assert f"COPE_QUANTIZATION={quantization}" in step["error"]
    attribution = report["attribution"]
    assert (attribution["clauses"], attribution["variants"], attribution["contents"]) == (12, 13, 4)
    assert attribution["policy_tokens"] <= 240 and attribution["max_abs_diff"] <= 1e-5
    assert attribution["flop_bound"] > 1 and attribution["measured_ratio"] > 0
    probe = report["probe"]
    expected = _tiny_probe_variants()
    assert probe["variants"] == expected and probe["clauses"] == 12 and probe["items"] == 4
    assert probe["variants_built"] == 4 + 12  # P, OFF, INV and DROP of one label, 12 removals
    assert probe["scores"] == expected * 4
    assert probe["model_seconds"] > 0 and probe["scores_per_s"] > 0
    assert 0 <= probe["outside_model_share"] < 1
    assert probe["wall_seconds"] >= probe["model_seconds"]
    whatif = report["whatif"]
    assert whatif["keys"] == ["A", "B", "A*", "B*"] and whatif["variants"] == 4
    assert whatif["items"] == 5 and whatif["scores"] == 20
    assert whatif["edited_clause"] == "label/BP1/excludes/1"
    assert whatif["model_seconds"] > 0 and whatif["target_seconds"] == 5.0
    assert "targets" not in report  # judged on the full plan only
    summary = (out / "summary.txt").read_text()
    assert summary == done.stdout
    assert "attribution: 13 variants" in summary and "FLOP bound" in summary
    assert f"probe: {expected} distinct variants" in summary
    assert "what-if edit (label/BP1/excludes/1): A, B, A*, B* x 5 items = 20 scores" in summary
    for text in (
        "gemma-2-mini",
        "cached/s",
        "single item (policy cached)",
        "out-of-memory",
        "8bit",
    ):
        assert text in summary


@NO_CUDA
def test_gpu_check_without_cuda_says_so_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "gpu-check"), str(out)],
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "--tiny --device cpu" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_gpu_check_refuses_the_9b_shape_on_the_cpu(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "gpu-check"), "--device", "cpu", str(tmp_path)],
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "add --tiny" in done.stderr


def test_whatif_policies_edit_one_clause_and_its_aligned_twin_clause() -> None:
    bench, policy = _tiny_policy()
    policies = whatif_policies(whatif_inputs(bench, policy))
    assert list(policies) == ["A", "B", "A*", "B*"] and policies["A"] == policy
    assert len(set(policies.values())) == 4
    keys = [c.key for c in parse_clauses(policy)]
    for text in policies.values():
        assert [c.key for c in parse_clauses(text)] == keys
    pairs = align_clauses(parse_clauses(policy), parse_clauses(policies["B"]))
    assert all(p.a is not None and p.b is not None and p.a.key == p.b.key for p in pairs)

    def changed(a: str, b: str) -> list[str]:
        return [
            x.key
            for x, y in zip(parse_clauses(a), parse_clauses(b), strict=True)
            if x.text != y.text
        ]

    assert changed(policies["A"], policies["A*"]) == ["label/BP1/excludes/1"]
    assert changed(policies["B"], policies["B*"]) == ["label/BP1/excludes/1"]
    assert len(changed(policies["A"], policies["B"])) == len(keys)  # every clause reworded


def test_reword_is_deterministic_and_keeps_headings_and_markers() -> None:
    text = (
        "## Overview\n\none two three four five six\n\n## Definition of Terms\n\n- a b c d e f g\n"
    )
    words = ["x", "y"]
    once = reword(text, words, seed=1)
    assert once == reword(text, words, seed=1)
    lines = once.splitlines()
    assert lines[0] == "## Overview" and lines[4] == "## Definition of Terms"
    assert lines[2].split(" ")[:4] == ["one", "two", "three", "four"]
    assert lines[2].split(" ")[4] in words
    assert lines[6].startswith("- a b c d ") and lines[6].split(" ")[5] in words
