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
