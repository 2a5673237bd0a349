"""The CoPE engine on a tiny random Gemma2 + LoRA: exact scores, fast paths equal slow ones."""

from __future__ import annotations

import random
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tests.worker.tiny_models import TinyCope, random_policy, random_text  # noqa: E402
from worker.base import BackendConfigError, Score  # noqa: E402
from worker.cope import CopeScorer, answer_token_ids, load_cope  # noqa: E402

pytestmark = pytest.mark.model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def merged(tiny_cope: TinyCope) -> CopeScorer:
    return load_cope(merged_path=str(tiny_cope.merged), device="cpu", max_batch_size=3)


@pytest.fixture(scope="module")
def base_plus_adapter(tiny_cope: TinyCope) -> CopeScorer:
    return load_cope(base_model=str(tiny_cope.base), adapter=str(tiny_cope.adapter), device="cpu")


@pytest.fixture(scope="module")
def policy() -> str:
    return random_policy(random.Random(7), 160)


@pytest.fixture(scope="module")
def contents() -> list[str]:
    rng = random.Random(11)
    texts = [random_text(rng, n) for n in (0, 1, 3, 9, 25, 60, 80, 14, 40, 5, 33, 2)]
    texts[0] = ""  # an empty item is still a prompt
    return texts


def p1s(scores: list[Score]) -> list[float]:
    assert all(s.error == "" and s.p1 is not None for s in scores), scores
    return [float(s.p1) for s in scores if s.p1 is not None]


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_policy_prompt_is_longer_than_the_sliding_window(merged: CopeScorer, policy: str) -> None:
    # Otherwise the cache tests below would not exercise the sliding-window layers.
    window = merged.model.config.sliding_window
    assert len(merged._prefix_ids(policy)) > 4 * window


def test_p1_agrees_with_greedy_generate(
    merged: CopeScorer, policy: str, contents: list[str]
) -> None:
    scores = merged.score(policy, contents)
    prefix_ids = merged._prefix_ids(policy)
    suffixes = merged._suffix_ids(contents)
    labels = []
    for score, suffix in zip(scores, suffixes, strict=True):
        ids = torch.tensor([prefix_ids + suffix])
        with torch.no_grad():
            out = merged.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=1,
                do_sample=False,
                pad_token_id=merged.pad_id,
            )
        token = int(out[0, -1])
        assert token in (merged.zero_id, merged.one_id)
        assert score.label == (1 if token == merged.one_id else 0)
        labels.append(score.label)
    assert set(labels) == {0, 1}, "the fixture should give both answers"


def test_prefix_cached_batches_equal_one_prompt_at_a_time(
    merged: CopeScorer, policy: str, contents: list[str]
) -> None:
    naive = p1s(merged.score_naive(policy, contents))
    cached = p1s(merged.score(policy, contents))
    assert max_diff(cached, naive) <= TOLERANCE
    assert max_diff(p1s(merged.score_batched_full(policy, contents)), naive) <= TOLERANCE
    assert len(set(round(p, 4) for p in naive)) > len(contents) // 2, "p1 should vary"


def test_prefix_cache_survives_reuse_and_other_policies(
    merged: CopeScorer, policy: str, contents: list[str]
) -> None:
    first = p1s(merged.score(policy, contents))
    other = random_policy(random.Random(99), 120)
    other_cached = p1s(merged.score(other, contents[:5]))
    assert max_diff(other_cached, p1s(merged.score_naive(other, contents[:5]))) <= TOLERANCE
    again = p1s(merged.score(policy, contents))
    assert max_diff(first, again) <= 1e-6
    assert policy in merged._prefixes and merged._prefixes[policy].cache is not None


def test_results_follow_input_order(merged: CopeScorer, policy: str, contents: list[str]) -> None:
    alone = [p1s(merged.score(policy, [c]))[0] for c in contents]
    shuffled = list(range(len(contents)))
    random.Random(3).shuffle(shuffled)
    together = p1s(merged.score(policy, [contents[i] for i in shuffled]))
    assert max_diff(together, [alone[i] for i in shuffled]) <= TOLERANCE


def test_adapter_changes_the_scores(
    tiny_cope: TinyCope, base_plus_adapter: CopeScorer, policy: str, contents: list[str]
) -> None:
    base_only = load_cope(base_model=str(tiny_cope.base), device="cpu")
    with_adapter = p1s(base_plus_adapter.score(policy, contents))
    without = p1s(base_only.score(policy, contents))
    assert max_diff(with_adapter, without) > 0.05


def test_merged_directory_equals_base_plus_adapter(
    merged: CopeScorer, base_plus_adapter: CopeScorer, policy: str, contents: list[str]
) -> None:
    assert (
        max_diff(
            p1s(merged.score(policy, contents)), p1s(base_plus_adapter.score(policy, contents))
        )
        <= TOLERANCE
    )


def test_unmerged_adapter_scores_like_the_merged_model(
    tiny_cope: TinyCope, merged: CopeScorer, policy: str, contents: list[str]
) -> None:
    # The path a quantized base takes (LoRA kept as separate layers), here in fp32 on the CPU.
    unmerged = load_cope(
        base_model=str(tiny_cope.base),
        adapter=str(tiny_cope.adapter),
        device="cpu",
        merge_adapter=False,
    )
    assert type(unmerged.model).__name__.startswith("Peft")
    assert (
        max_diff(p1s(unmerged.score(policy, contents)), p1s(merged.score_naive(policy, contents)))
        <= TOLERANCE
    )


def test_worker_info_names_model_and_device(
    tiny_cope: TinyCope, merged: CopeScorer, base_plus_adapter: CopeScorer
) -> None:
    assert merged.info.backend == "cope"
    assert merged.info.model_id == str(tiny_cope.merged)
    assert merged.info.device == "cpu"
    assert str(tiny_cope.base) in base_plus_adapter.info.model_id
    assert str(tiny_cope.adapter) in base_plus_adapter.info.model_id


def test_too_long_item_fails_alone(
    tiny_cope: TinyCope, merged: CopeScorer, policy: str, contents: list[str]
) -> None:
    prefix_len = len(merged._prefix_ids(policy))
    lengths = [len(ids) for ids in merged._suffix_ids(contents)]
    limit = prefix_len + sorted(lengths)[-2]  # only the longest item is over
    tight = load_cope(
        merged_path=str(tiny_cope.merged), device="cpu", context_limit=limit, max_batch_size=4
    )
    scores = tight.score(policy, contents)
    longest = lengths.index(max(lengths))
    assert scores[longest].label is None and scores[longest].p1 is None
    assert f"{prefix_len + max(lengths)} tokens" in scores[longest].error
    assert f"limit {limit}" in scores[longest].error
    reference = p1s(merged.score_naive(policy, contents))
    for i, score in enumerate(scores):
        if i != longest:
            assert score.error == "" and score.p1 is not None
            assert abs(score.p1 - reference[i]) <= TOLERANCE
    assert tight.score_naive(policy, contents)[longest].error == scores[longest].error


def test_an_item_out_of_memory_alone_fails_alone(
    tiny_cope: TinyCope, policy: str, contents: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = load_cope(merged_path=str(tiny_cope.merged), device="cpu", max_batch_size=4)
    lengths = [len(ids) for ids in scorer._suffix_ids(contents)]
    longest = lengths.index(max(lengths))
    real_forward = scorer._forward
    batches: list[int] = []

    def forward(batch: list[list[int]], cache: Any) -> list[Any]:
        batches.append(len(batch))
        if any(len(ids) == max(lengths) for ids in batch):  # this item never fits
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(batch, cache)

    monkeypatch.setattr(scorer, "_forward", forward)
    scores = scorer.score(policy, contents)
    assert scores[longest].label is None and "Out of memory" in scores[longest].error
    reference = p1s(
        load_cope(merged_path=str(tiny_cope.merged), device="cpu").score(policy, contents)
    )
    for i, score in enumerate(scores):
        if i != longest:
            assert score.error == "" and score.p1 is not None
            assert abs(score.p1 - reference[i]) <= TOLERANCE
    assert batches[:3] == [4, 2, 1]  # halved down to the item alone


# CoPE-A-9B reads 8,192 tokens (Gemma 2's window): template, policy and content, BOS included.
COPE_WINDOW = 8192


def _content_of(scorer: CopeScorer, suffix_tokens: int) -> str:
    """Content whose suffix (content plus the answer slot) is exactly ``suffix_tokens`` long."""
    slot = len(scorer._suffix_ids([""])[0])
    content = " ".join(["a"] * (suffix_tokens - slot))
    assert len(scorer._suffix_ids([content])[0]) == suffix_tokens, "one token per word no more"
    return content


def test_default_limit_scores_a_full_window_and_refuses_one_token_more(
    tiny_cope: TinyCope, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scorer built without a limit scores a prompt that fills CoPE's window exactly and
    refuses, whole and never truncated, a prompt one token longer: it never reaches the model."""
    scorer = load_cope(merged_path=str(tiny_cope.merged), device="cpu")
    run: list[int] = []

    def forward(batch: list[list[int]], cache: Any) -> list[Any]:
        run.extend(len(ids) for ids in batch)  # the model's answer is not what is tested here
        return [0.25] * len(batch)

    monkeypatch.setattr(scorer, "_forward", forward)
    prefix = len(scorer._prefix_ids(policy))
    fits = _content_of(scorer, COPE_WINDOW - prefix)
    over = _content_of(scorer, COPE_WINDOW + 1 - prefix)

    scores = scorer.score(policy, [fits, over])

    assert (scores[0].error, scores[0].p1) == ("", 0.25)
    assert scores[1].label is None and scores[1].p1 is None
    assert f"Content too long for CoPE: {COPE_WINDOW + 1} tokens" in scores[1].error
    assert f"limit {COPE_WINDOW}" in scores[1].error
    assert run == [COPE_WINDOW - prefix]


def test_policy_over_the_limit_fails_every_item(tiny_cope: TinyCope, policy: str) -> None:
    tiny_limit = load_cope(merged_path=str(tiny_cope.merged), device="cpu", context_limit=64)
    scores = tiny_limit.score(policy, ["a", "b", "c"])
    assert len(scores) == 3
    assert all(s.label is None and "Policy too long" in s.error for s in scores)
    assert "limit 64" in scores[0].error


def test_empty_call_returns_empty_list(merged: CopeScorer, policy: str) -> None:
    assert merged.score(policy, []) == []


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"base_model": "/no/such/base"}, "COPE_BASE_MODEL"),
        ({"merged_path": "./no/such/merged"}, "COPE_MERGED_MODEL"),
        ({"base_model": "BASE", "adapter": "/no/such/adapter"}, "COPE_ADAPTER"),
    ],
)
def test_missing_local_path_names_the_setting(
    tiny_cope: TinyCope, kwargs: dict[str, Any], setting: str
) -> None:
    kwargs = {k: str(tiny_cope.base) if v == "BASE" else v for k, v in kwargs.items()}
    with pytest.raises(BackendConfigError, match=setting) as info:
        load_cope(device="cpu", **kwargs)
    assert "does not exist" in str(info.value)


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantization_without_cuda_names_the_setting(
    tiny_cope: TinyCope, quantization: str
) -> None:
    with pytest.raises(BackendConfigError, match="COPE_QUANTIZATION") as info:
        load_cope(merged_path=str(tiny_cope.merged), device="cpu", quantization=quantization)
    assert "CUDA" in str(info.value)


def test_cuda_asked_without_gpu_names_the_setting(tiny_cope: TinyCope) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendConfigError, match="COPE_DEVICE"):
        load_cope(merged_path=str(tiny_cope.merged), device="cuda")


def test_unknown_hub_model_offline_says_use_a_local_path() -> None:
    with pytest.raises(BackendConfigError, match="COPE_BASE_MODEL") as info:
        load_cope(base_model="cope-studio-tests/not-a-model", device="cpu")
    assert "HF_HUB_OFFLINE" in str(info.value)
    assert "local" in str(info.value)


def test_answer_digits_must_be_single_tokens() -> None:
    class SplitsDigits:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [5, 6] if text == "1" else [4]

    with pytest.raises(BackendConfigError, match="single tokens"):
        answer_token_ids(SplitsDigits())


def test_bench_reports_speed_and_agreement(
    tiny_cope: TinyCope, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from worker.bench import main

    argv = ["--model", str(tiny_cope.merged), "--device", "cpu", "--items", "6"]
    argv += ["--naive-items", "3", "--policy-tokens", "120", "--content-tokens", "12", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["items"] == 6 and result["naive_items"] == 3
    assert result["policy_tokens"] >= 120
    assert result["max_abs_diff"] <= TOLERANCE
    for key in ("naive_items_per_s", "batched_items_per_s", "cached_items_per_s", "speedup"):
        assert result[key] > 0
