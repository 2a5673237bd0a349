"""worker.bench at the real shape's config and at small shapes (bin/gpu-check: test_gpu_check.py).

The GPU run executes exactly these code paths with bigger numbers, so CI checks what the device
check will run before any GPU time is spent.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tests.worker.tiny_models import TinyCope, random_policy, random_text  # noqa: E402
from worker.bench import (  # noqa: E402
    build_random_model,
    gemma2_parameters,
    kv_gib,
    main,
    shape_config,
    word_tokenizer,
)
from worker.cope import load_cope  # noqa: E402
from worker.gpu_check import count_oom_splits  # noqa: E402

pytestmark = pytest.mark.model

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # see tests/worker/conftest.py: spinning threads on a busy machine


def test_gemma_2_9b_shape_is_the_real_architecture() -> None:
    config = shape_config("gemma-2-9b")
    assert config.model_type == "gemma2"
    assert config.hidden_size == 3584
    assert config.num_hidden_layers == 42
    assert config.num_attention_heads == 16
    assert config.num_key_value_heads == 8
    assert config.head_dim == 256
    assert config.intermediate_size == 14336
    assert config.vocab_size == 256000
    assert config.sliding_window == 4096
    assert config.query_pre_attn_scalar == 256
    assert (config.attn_logit_softcapping, config.final_logit_softcapping) == (50.0, 30.0)
    assert config.hidden_activation == "gelu_pytorch_tanh"
    assert config.tie_word_embeddings is True
    assert config.layer_types[:2] == ["sliding_attention", "full_attention"]
    assert config._attn_implementation == "eager"  # as load_cope loads CoPE
    assert gemma2_parameters(config) == 9_241_705_984  # Gemma-2-9B's published 9.24B


@pytest.mark.parametrize("shape", ["gemma-2-mini", "gemma-2-9b"])
def test_model_is_built_on_the_target_device_with_the_counted_parameters(shape: str) -> None:
    # The meta device allocates nothing, so the 9B module itself can be counted here; on a GPU
    # the same call puts every parameter straight on CUDA.
    config = shape_config(shape)
    model = build_random_model(config, device=torch.device("meta"), dtype=torch.bfloat16)
    params = list(model.parameters())
    assert {p.device.type for p in params} == {"meta"}
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert sum(p.numel() for p in params) == gemma2_parameters(config)


def test_kv_figure_counts_the_prefix_once_per_row() -> None:
    config = shape_config("gemma-2-9b")
    # 42 layers x (4000 + 64) positions x 2 (k, v) x 8 heads x 256 x 2 bytes, 32 rows
    expected = 32 * 42 * 4064 * 2 * 8 * 256 * 2 / 2**30
    got = kv_gib(config, prefix_len=4000, width=64, rows=32, dtype=torch.bfloat16)
    assert got == pytest.approx(expected, rel=1e-3)
    # Past the window, sliding layers (every other one) keep 4095 prefix positions.
    long = kv_gib(config, prefix_len=6000, width=64, rows=1, dtype=torch.bfloat16)
    assert long == pytest.approx((21 * (6000 + 64) + 21 * (4095 + 64)) * 8192 / 2**30, rel=1e-3)


def test_word_tokenizer_gives_exact_lengths_in_the_real_vocabulary() -> None:
    tokenizer = word_tokenizer(256000)
    assert tokenizer.encode("t10 t255999 t7", add_special_tokens=False) == [10, 255999, 7]
    assert tokenizer("t10")["input_ids"] == [tokenizer.bos_token_id, 10]
    assert len(tokenizer.encode("0", add_special_tokens=False)) == 1
    assert len(tokenizer.encode("1", add_special_tokens=False)) == 1
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 1, 2)


def test_bench_at_a_real_shape_reports_every_batch_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--shape", "gemma-2-mini", "--device", "cpu", "--dtype", "float32"]
    argv += ["--batch-sizes", "1,3", "--batches-per-size", "1", "--items", "3"]
    argv += ["--naive-items", "2", "--policy-tokens", "150", "--content-tokens", "10"]
    argv += ["--peak-tflops", "0.002", "--latency-requests", "2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    params = gemma2_parameters(shape_config("gemma-2-mini"))
    assert result["shape"] == "gemma-2-mini" and result["parameters"] == params
    assert result["dtype"] == "float32" and result["device"] == "cpu"
    assert result["policy_tokens"] > 150 > 128  # the prompt passes the sliding window
    assert 7 <= result["content_tokens_mean"] <= 13
    assert result["max_abs_diff"] <= 1e-5
    assert result["p1_min"] < result["p1_max"]
    rows = result["batch_sizes"]
    assert [row["batch_size"] for row in rows] == [1, 3]
    for row in rows:
        assert row["items"] >= max(row["batch_size"], 2)
        assert row["naive_items_per_s"] == result["naive_items_per_s"]
        assert row["speedup"] == pytest.approx(
            row["cached_items_per_s"] / row["naive_items_per_s"], rel=0.02
        )
        assert row["max_abs_diff"] <= 1e-5
        flops = 2 * params * row["tokens"] / row["seconds"] / 1e12
        assert row["tflops"] == pytest.approx(flops, rel=0.01)
        assert row["share_of_peak"] == pytest.approx(row["tflops"] / 0.002, rel=0.01)
        assert row["peak_memory_gib"] > 0 and "RSS" in row["peak_memory_kind"]
        assert row["kv_gib"] > 0
    assert rows[1]["kv_gib"] == pytest.approx(3 * rows[0]["kv_gib"], rel=0.2)
    for key in ("latency_warm", "latency_cold"):
        latency = result[key]
        assert latency["requests"] == 2
        assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["max_ms"]
    assert result["latency_warm"]["prefix_cached"] and not result["latency_cold"]["prefix_cached"]


def test_bench_dtype_and_batch_sizes_on_a_saved_model(
    tiny_cope: TinyCope, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(tiny_cope.merged), "--device", "cpu", "--dtype", "bfloat16"]
    argv += ["--items", "4", "--naive-items", "2", "--policy-tokens", "120"]
    argv += ["--content-tokens", "10", "--batch-sizes", "2", "--batches-per-size", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "bfloat16" in out
    assert "speedup" in out and "of peak" in out  # the table, with n/a: no --peak-tflops given
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("batch"))
    assert lines[header + 1].split()[0] == "2" and lines[header + 1].split()[-1] == "n/a"


def test_bench_refuses_unknown_shape_and_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--shape", "gemma-9-huge"]) == 2
    assert "Unknown shape 'gemma-9-huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--batch-sizes", "0,4"])
    assert "batch sizes must be integers >= 1" in capsys.readouterr().err


@NO_CUDA
def test_bench_says_no_cuda_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--shape", "gemma-2-9b", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_out_of_memory_splits_are_counted_and_scores_kept(
    tiny_cope: TinyCope, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What gpu-check counts on the GPU, with the allocator's refusal played by the test: the
    # scorer's real halving code runs.
    scorer = load_cope(merged_path=str(tiny_cope.merged), device="cpu", max_batch_size=8)
    rng = random.Random(5)
    policy = random_policy(rng, 80)
    contents = [random_text(rng, rng.randint(3, 12)) for _ in range(8)]
    reference = [s.p1 for s in scorer.score(policy, contents)]
    real_forward = scorer._forward

    def forward(batch: list[list[int]], cache: object) -> list[Any]:
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_forward(batch, cache)  # type: ignore[arg-type]

    monkeypatch.setattr(scorer, "_forward", forward)
    with count_oom_splits() as splits:
        halved = [s.p1 for s in scorer.score(policy, contents)]
    assert len(splits) == 3  # 8 -> 4 + 4, each 4 -> 2 + 2
    assert "batch of 8" in splits[0]
    assert all(a is not None and b is not None for a, b in zip(halved, reference, strict=True))
    assert max(abs(a - b) for a, b in zip(halved, reference, strict=True)) <= 1e-5  # type: ignore[operator]


def test_attribution_bench_prints_rates_agreement_and_the_flop_bound(
    tiny_cope: TinyCope, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.bench_attribution import main

    argv = ["--model", str(tiny_cope.merged), "--device", "cpu", "--json"]
    argv += ["--policy-tokens", "300", "--clauses", "10", "--contents", "3"]
    argv += ["--content-tokens", "10", "--naive-pairs", "3"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["clauses"] == 10 and result["variants"] == 11 and result["contents"] == 3
    assert 290 <= result["policy_tokens"] <= 300
    assert result["variant_scores"] == 33 and result["naive_pairs"] == 3
    assert result["max_abs_diff"] <= 1e-4
    assert result["shared_scores_per_s"] > 0 and result["naive_scores_per_s"] > 0
    assert 1 < result["flop_bound"] < result["naive_tokens"]
    assert result["share_of_flop_bound"] == pytest.approx(
        result["measured_ratio"] / result["flop_bound"], abs=2e-3
    )


def test_flop_bound_counts_each_prefix_token_the_engine_runs() -> None:
    from types import SimpleNamespace

    from worker.bench_attribution import flop_bounds, shared_prefix_runs

    prefixes = [[1] * 10, [1] * 5 + [2] * 5, [1] * 10]  # the third is the first again
    assert shared_prefix_runs(prefixes) == [(0, 10), (5, 10)]
    config = SimpleNamespace(
        vocab_size=10,
        hidden_size=4,
        tie_word_embeddings=True,
        num_attention_heads=1,
        head_dim=4,
        num_hidden_layers=1,
    )
    bounds = flop_bounds(prefixes, [2], config, params=1040)
    # One prompt per forward: 3 x (10 + 2) tokens; shared: 10 + 5 prefix tokens, 3 x 2 contents.
    assert (bounds["naive_tokens"], bounds["shared_tokens"]) == (36, 21)
    assert bounds["flop_bound"] == round(36 / 21, 2)
    assert bounds["flop_bound_with_attention"] > 1
