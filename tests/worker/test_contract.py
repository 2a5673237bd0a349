"""The worker contract's messages: what the web side sends and reads back."""

from __future__ import annotations


def test_written_out_dicts_match_every_field() -> None:
    # ScoreRequest and ScoreResult spell their dicts out (asdict was milliseconds a chunk): a
    # field added later must not be left out of the message.
    from dataclasses import asdict

    from worker.contract import ScoreItem, ScoreOutcome, ScoreRequest, ScoreResult, WorkerInfo

    request = ScoreRequest(1, 2, "A", "policy", [ScoreItem(3, "text")], attempt=2)
    assert request.to_dict() == asdict(request)
    assert ScoreRequest.from_dict(request.to_dict()) == request
    result = ScoreResult(
        1,
        2,
        "B",
        [ScoreOutcome(3, 1, 0.9), ScoreOutcome(4, None, None, "too long")],
        WorkerInfo("cope", "m", "r", "cuda", weak=False),
        1.5,
    )
    assert result.to_dict() == asdict(result)
    assert ScoreResult.from_dict(result.to_dict()) == result


def test_explain_messages_round_trip_and_check_their_version() -> None:
    import json
    import math
    from dataclasses import asdict

    import pytest

    from worker.contract import (
        ContractError,
        ExplainRequest,
        ExplainResult,
        ScoreItem,
        VariantOutcome,
        VariantSpec,
        WorkerInfo,
    )

    request = ExplainRequest(
        run_id=7,
        chunk_id=3,
        variants=[VariantSpec("A", "policy a"), VariantSpec("A-:overview", "policy")],
        items=[ScoreItem(11, "text"), ScoreItem(12, "")],
        attempt=2,
    )
    assert request.to_dict() == asdict(request)
    assert ExplainRequest.from_dict(request.to_dict()) == request
    first = request.to_dict()
    del first["attempt"]
    assert ExplainRequest.from_dict(first).attempt == 1
    with pytest.raises(ContractError, match="contract version 2"):
        ExplainRequest.from_dict(request.to_dict() | {"contract": 2})
    twice = request.to_dict()
    twice["variants"] = [{"key": "A", "policy": "x"}, {"key": "A", "policy": "y"}]
    with pytest.raises(ContractError, match="unique"):
        ExplainRequest.from_dict(twice)

    result = ExplainResult(
        run_id=7,
        chunk_id=3,
        outcomes=[
            VariantOutcome("A", 11, 1, 0.9, math.log(9)),
            VariantOutcome("A-:overview", 11, None, None, None, "too long"),
        ],
        worker=WorkerInfo("embedding", "m", "r", "cpu", weak=True),
        model_seconds=0.5,
    )
    # On the wire the outcomes are columns, one list per figure, errors by position.
    columns = {
        "keys": ["A", "A-:overview"],
        "key": [0, 1],
        "item": [11, 11],
        "label": [1, None],
        "p1": [0.9, None],
        "margin": [math.log(9), None],
        "errors": {"1": "too long"},
    }
    wire = {k: v for k, v in asdict(result).items() if k != "outcomes"} | {"columns": columns}
    assert json.loads(json.dumps(result.to_dict())) == wire
    assert ExplainResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    # A worker from before the columns sends a dict per outcome: still read, the same answer.
    rows = [o._asdict() for o in result.outcomes]
    older = {k: v for k, v in wire.items() if k != "columns"} | {"outcomes": rows}
    assert ExplainResult.from_dict(older) == result
    assert list(ExplainResult.from_dict(older).outcomes) == list(result.outcomes)
    with pytest.raises(ContractError):
        ExplainResult.from_dict(result.to_dict() | {"contract": 0})


def test_margin_from_p1_is_the_logit_and_finite_at_the_ends() -> None:
    import math

    from worker.contract import margin_from_p1

    assert margin_from_p1(0.5) == 0.0
    assert margin_from_p1(0.9) == math.log(9)
    assert 16 < margin_from_p1(1.0) < 16.2 and -16.2 < margin_from_p1(0.0) < -16
    assert margin_from_p1(0.999) > margin_from_p1(0.99)


def test_an_explain_answer_in_other_types_is_converted_or_refused() -> None:
    """A well-formed answer is taken as sent; numbers in other JSON types are converted one by
    one, and what is not a number is refused."""
    import pytest

    from worker.contract import ExplainResult, VariantOutcome, WorkerInfo

    base = ExplainResult(
        run_id=1,
        chunk_id=2,
        outcomes=[VariantOutcome("A", 11, 1, 0.9, 2.0)],
        worker=WorkerInfo("embedding", "m", "r", "cpu", weak=True),
        model_seconds=0.5,
    ).to_dict()
    # The form before columns (a dict per outcome), then the columns.
    rows = {k: v for k, v in base.items() if k != "columns"}
    odd = rows | {"outcomes": [{"key": "A", "item_id": "11", "label": 1, "p1": 1, "margin": 2}]}
    (outcome,) = ExplainResult.from_dict(odd).outcomes
    assert outcome == VariantOutcome("A", 11, 1, 1.0, 2.0, "")
    assert type(outcome.item_id) is int and type(outcome.p1) is float
    bad = rows | {"outcomes": [{"key": "A", "item_id": "eleven", "label": 1, "p1": 0.9}]}
    with pytest.raises(ValueError):
        ExplainResult.from_dict(bad)
    # The columns: numbers in other types converted, anything else refused.
    columns = base["columns"]
    odd = base | {"columns": columns | {"item": ["11"], "p1": [1], "label": [True]}}
    (outcome,) = ExplainResult.from_dict(odd).outcomes
    assert outcome == VariantOutcome("A", 11, 1, 1.0, 2.0, "")
    assert type(outcome.item_id) is int and type(outcome.p1) is float
    for broken in (
        {"item": ["eleven"]},
        {"item": [11, 12]},  # columns of different lengths
        {"key": [1]},  # a key index past the keys
        {"keys": ["A", "A"]},
        {"errors": {"5": "past the end"}},
        {"label": "1"},  # not a list
    ):
        with pytest.raises(ValueError):
            ExplainResult.from_dict(base | {"columns": columns | broken})
