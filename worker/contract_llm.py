"""The LLM's messages between the web app and the model workers: a probe's carve-outs and
rewording, and suggested rewrites of a clause.

Versioned like ``worker.contract`` (same ``CONTRACT_VERSION``, same rules: JSON through Celery,
requests by task name to ``gpu``, results as a task on ``default`` that the web side writes once).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from worker.contract import CONTRACT_VERSION, _check_version

# A probe's LLM parts (see ProbeLLMRequest): queue "gpu": ProbeLLMRequest -> sends
# RECORD_PROBE_LLM_TASK.
PROBE_LLM_TASK = "worker.probe_llm"
RECORD_PROBE_LLM_TASK = "labeling.record_probe_llm"  # queue "default": ProbeLLMResult as a dict


# A probe's LLM parts: carve-outs and a rewording ----------------------------------------
# When a probe run (``labeling.probes``) has finished and an LLM backend is configured
# (COPE_TWIN_BACKEND), the web side sends one ProbeLLMRequest to PROBE_LLM_TASK on ``gpu``: the
# version's text and some items it labels 1, each with the label whose Includes made it 1. The
# worker asks the twin writer for a fresh rewording of the whole policy (``worker.twin``'s prompt
# and checks) and, per item, one Excludes criterion that exempts exactly that item's case
# (``worker.carveouts``), and sends one ProbeLLMResult to RECORD_PROBE_LLM_TASK on ``default``,
# which the web side records once per run. Added within contract 1; the request carries no
# ``chunk_id``, so the broker's look at explain chunks never takes it for one.


@dataclass(frozen=True)
class CarveoutAsk:
    """One item to write a carve-out for: its text and the label code whose Excludes gets it."""

    item_id: int
    label: str
    text: str


@dataclass(frozen=True)
class ProbeLLMRequest:
    run_id: int  # the web side's probe run
    policy: str  # the version's text
    items: list[CarveoutAsk]
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "policy": self.policy,
            "items": [{"item_id": i.item_id, "label": i.label, "text": i.text} for i in self.items],
            "contract": self.contract,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeLLMRequest:
        _check_version(data)
        return cls(
            run_id=int(data["run_id"]),
            policy=str(data["policy"]),
            items=[
                CarveoutAsk(int(i["item_id"]), str(i["label"]), str(i["text"]))
                for i in data["items"]
            ],
        )


@dataclass(frozen=True)
class CarveoutAnswer:
    """The criterion the LLM wrote for one item (empty with ``error`` when it was rejected or
    could not be written) and the prompt sent for it."""

    item_id: int
    label: str
    criterion: str
    prompt: str
    error: str = ""


@dataclass(frozen=True)
class ProbeLLMResult:
    """The answer to a ProbeLLMRequest. ``rewording`` is empty when the twin failed its checks
    (``rewording_error`` says why); ``error`` is set, and nothing else, when the whole request
    failed (no backend, the server stayed down)."""

    run_id: int
    rewording: str
    rewording_error: str
    model: str
    prompt: str  # the rewording prompt as sent
    carveouts: list[CarveoutAnswer]
    error: str = ""
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeLLMResult:
        _check_version(data)
        return cls(
            run_id=int(data["run_id"]),
            rewording=str(data["rewording"]),
            rewording_error=str(data.get("rewording_error", "")),
            model=str(data.get("model", "")),
            prompt=str(data.get("prompt", "")),
            carveouts=[
                CarveoutAnswer(
                    item_id=int(c["item_id"]),
                    label=str(c["label"]),
                    criterion=str(c["criterion"]),
                    prompt=str(c.get("prompt", "")),
                    error=str(c.get("error", "")),
                )
                for c in data["carveouts"]
            ],
            error=str(data.get("error", "")),
        )


# Suggested rewrites of one clause ------------------------------------------------------------
# An author asks for rewrites of a clause (``labeling.whatif.suggest``): the web side sends one
# SuggestRequest to SUGGEST_TASK on ``gpu`` with the version's text, the clause's key and the
# mismatches it decides; the worker's LLM (COPE_TWIN_BACKEND, the twin writer) writes the
# candidates (``worker.suggest``), and one SuggestResult goes to RECORD_SUGGEST_TASK on
# ``default``, recorded once per run. Added within contract 1; no ``chunk_id``, like the probe's.
SUGGEST_TASK = "worker.suggest_rewrites"
RECORD_SUGGEST_TASK = "labeling.record_suggest"  # queue "default": SuggestResult as a dict


@dataclass(frozen=True)
class SuggestMismatch:
    """One mismatch the clause decides, as the prompt shows it. ``correct``/``wording`` are a
    reviewer's decision ("" when none): correct "0", "1" or "u"; wording "a", "b" or "n"."""

    item_id: int
    text: str
    label_a: int | None
    label_b: int | None
    correct: str = ""
    wording: str = ""
    quote: str = ""
    note: str = ""


@dataclass(frozen=True)
class SuggestCandidate:
    """A rewrite of the clause, its independent paraphrase for the twin, and why."""

    rewrite: str
    paraphrase: str
    rationale: str


def _optional_label(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class SuggestRequest:
    run_id: int  # the web side's SUGGEST run
    policy: str  # the version's text
    clause_key: str  # a key of ``worker.clauses.parse_clauses(policy)``
    candidates: int  # how many rewrites to ask for (COPE_SUGGEST_CANDIDATES)
    mismatches: list[SuggestMismatch]
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuggestRequest:
        _check_version(data)
        return cls(
            run_id=int(data["run_id"]),
            policy=str(data["policy"]),
            clause_key=str(data["clause_key"]),
            candidates=int(data["candidates"]),
            mismatches=[
                SuggestMismatch(
                    item_id=int(m["item_id"]),
                    text=str(m["text"]),
                    label_a=_optional_label(m.get("label_a")),
                    label_b=_optional_label(m.get("label_b")),
                    correct=str(m.get("correct", "")),
                    wording=str(m.get("wording", "")),
                    quote=str(m.get("quote", "")),
                    note=str(m.get("note", "")),
                )
                for m in data["mismatches"]
            ],
        )


@dataclass(frozen=True)
class SuggestResult:
    """The answer to a SuggestRequest: the candidates that passed the worker's checks, a line
    per candidate (or answer) dropped in ``problems``, the model and the prompt as sent.
    ``error`` is set, and nothing else, when the whole request failed."""

    run_id: int
    model: str
    prompt: str
    candidates: list[SuggestCandidate]
    problems: list[str] = field(default_factory=list)
    error: str = ""
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuggestResult:
        _check_version(data)
        return cls(
            run_id=int(data["run_id"]),
            model=str(data.get("model", "")),
            prompt=str(data.get("prompt", "")),
            candidates=[
                SuggestCandidate(
                    rewrite=str(c["rewrite"]),
                    paraphrase=str(c["paraphrase"]),
                    rationale=str(c["rationale"]),
                )
                for c in data["candidates"]
            ],
            problems=[str(p) for p in data.get("problems", [])],
            error=str(data.get("error", "")),
        )
