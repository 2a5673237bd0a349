"""The only surface shared by the web app and the model workers.

Small, versioned dataclasses sent as JSON through Celery (never pickle). GPU hosts need broker
access only: the web side sends a request by task name to the ``gpu`` queue, and the worker sends
the result back as a task on the ``default`` queue that the web side writes idempotently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from worker.columns import OutcomeColumns as OutcomeColumns
from worker.columns import VariantOutcome as VariantOutcome
from worker.columns import columns_from_rows

CONTRACT_VERSION = 1

# Celery task names, the routing table both sides agree on.
SCORE_CHUNK_TASK = "worker.score_chunk"  # queue "gpu": ScoreRequest -> sends RECORD_CHUNK_TASK
GENERATE_TWIN_TASK = "worker.generate_twin"  # queue "gpu": TwinRequest -> sends RECORD_TWIN_TASK
DESCRIBE_TASK = "worker.describe"  # queue "gpu": -> WorkerInfo as a dict (for `inspect`/UI)
RECORD_CHUNK_TASK = "labeling.record_chunk"  # queue "default": ScoreResult as a dict
RECORD_TWIN_TASK = "policies.record_twin"  # queue "default": TwinResult as a dict
RECORD_HEARTBEAT_TASK = "labeling.record_heartbeat"  # queue "default": Heartbeat as a dict
# Attribution (see ExplainRequest): queue "gpu": ExplainRequest -> sends RECORD_EXPLAIN_TASK.
EXPLAIN_CHUNK_TASK = "worker.explain_chunk"
RECORD_EXPLAIN_TASK = "labeling.record_explain"  # queue "default": ExplainResult as a dict
GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"


class ContractError(ValueError):
    """A message that does not match this contract version."""


def _check_version(data: dict[str, Any]) -> None:
    got = data.get("contract")
    if got != CONTRACT_VERSION:
        raise ContractError(f"contract version {got!r} received, {CONTRACT_VERSION} expected")


@dataclass(frozen=True)
class ScoreItem:
    item_id: int
    text: str


@dataclass(frozen=True)
class ScoreRequest:
    """Score ``items`` under ``policy`` (one side of one chunk of a binocular job)."""

    job_id: int
    chunk_id: int
    side: str  # "A" (primary text) or "B" (twin)
    policy: str
    items: list[ScoreItem]
    # Which send of this chunk this is (1 for the first). Added within contract 1: a request
    # without it is a first send, and an older worker ignores it.
    attempt: int = 1
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        # Written out: ``asdict`` copies every item recursively, milliseconds a chunk.
        return {
            "job_id": self.job_id,
            "chunk_id": self.chunk_id,
            "side": self.side,
            "policy": self.policy,
            "items": [{"item_id": i.item_id, "text": i.text} for i in self.items],
            "attempt": self.attempt,
            "contract": self.contract,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreRequest:
        _check_version(data)
        return cls(
            job_id=int(data["job_id"]),
            chunk_id=int(data["chunk_id"]),
            side=str(data["side"]),
            policy=str(data["policy"]),
            items=[ScoreItem(int(i["item_id"]), str(i["text"])) for i in data["items"]],
            attempt=int(data.get("attempt", 1)),
        )


@dataclass(frozen=True)
class ScoreOutcome:
    """One item's result: a label with the probability of ``1``, or an error and no label."""

    item_id: int
    label: int | None
    p1: float | None
    error: str = ""


@dataclass(frozen=True)
class WorkerInfo:
    backend: str  # "cope", "openai", "embedding"
    model_id: str
    model_revision: str
    device: str
    weak: bool = False  # True for the embedding baseline: not CoPE, say so on every page

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerInfo:
        return cls(
            backend=str(data["backend"]),
            model_id=str(data["model_id"]),
            model_revision=str(data.get("model_revision", "")),
            device=str(data.get("device", "")),
            weak=bool(data.get("weak", False)),
        )


@dataclass(frozen=True)
class ScoreResult:
    job_id: int
    chunk_id: int
    side: str
    outcomes: list[ScoreOutcome]
    worker: WorkerInfo
    model_seconds: float
    error: str = ""  # set when the whole chunk failed (after retries): outcomes is then empty
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        # Written out: ``asdict`` copies every outcome recursively, milliseconds a chunk.
        return {
            "job_id": self.job_id,
            "chunk_id": self.chunk_id,
            "side": self.side,
            "outcomes": [
                {"item_id": o.item_id, "label": o.label, "p1": o.p1, "error": o.error}
                for o in self.outcomes
            ],
            "worker": self.worker.to_dict(),
            "model_seconds": self.model_seconds,
            "error": self.error,
            "contract": self.contract,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreResult:
        _check_version(data)
        return cls(
            job_id=int(data["job_id"]),
            chunk_id=int(data["chunk_id"]),
            side=str(data["side"]),
            outcomes=[
                ScoreOutcome(
                    item_id=int(o["item_id"]),
                    label=None if o["label"] is None else int(o["label"]),
                    p1=None if o["p1"] is None else float(o["p1"]),
                    error=str(o.get("error", "")),
                )
                for o in data["outcomes"]
            ],
            worker=WorkerInfo.from_dict(data["worker"]),
            model_seconds=float(data["model_seconds"]),
            error=str(data.get("error", "")),
        )


@dataclass(frozen=True)
class TwinRequest:
    request_id: int  # the web side's TwinJob id
    policy: str
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwinRequest:
        _check_version(data)
        return cls(request_id=int(data["request_id"]), policy=str(data["policy"]))


@dataclass(frozen=True)
class TwinResult:
    request_id: int
    text: str  # empty when rejected or failed
    model: str
    prompt: str
    similarity: dict[str, float] = field(default_factory=dict)
    error: str = ""  # why the twin was rejected (structural check) or generation failed
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwinResult:
        _check_version(data)
        return cls(
            request_id=int(data["request_id"]),
            text=str(data["text"]),
            model=str(data["model"]),
            prompt=str(data["prompt"]),
            similarity={str(k): float(v) for k, v in data.get("similarity", {}).items()},
            error=str(data.get("error", "")),
        )


@dataclass(frozen=True)
class Heartbeat:
    """A model worker's report of itself, sent every few seconds (``worker.heartbeat``).

    ``state`` is ``starting`` (model loading), ``ready``, ``busy`` (``job_id`` etc. say on
    what), ``error`` (the model did not load: ``error`` says why) or ``stopped`` (a clean
    shutdown). ``memory_bytes`` is the GPU memory torch holds on a CUDA worker, else the
    process's resident memory (``memory_kind`` says which).
    """

    name: str  # the Celery node name, e.g. gpu@host-1 (unique per worker)
    hostname: str
    pid: int
    queues: list[str]
    state: str
    backend: str
    model_id: str
    model_revision: str
    device: str
    memory_bytes: int | None
    memory_kind: str  # "gpu" or "rss"
    job_id: int | None
    chunk_id: int | None
    side: str
    task: str
    error: str
    sent_at: float  # the worker's clock, seconds since the epoch
    weak: bool = False
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Heartbeat:
        _check_version(data)

        def optional_int(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        return cls(
            name=str(data["name"])[:200],
            hostname=str(data.get("hostname", ""))[:200],
            pid=int(data.get("pid", 0)),
            queues=[str(q) for q in data.get("queues", [])],
            state=str(data["state"]),
            backend=str(data.get("backend", "")),
            model_id=str(data.get("model_id", "")),
            model_revision=str(data.get("model_revision", "")),
            device=str(data.get("device", "")),
            memory_bytes=optional_int("memory_bytes"),
            memory_kind=str(data.get("memory_kind", "")),
            job_id=optional_int("job_id"),
            chunk_id=optional_int("chunk_id"),
            side=str(data.get("side", "")),
            task=str(data.get("task", "")),
            error=str(data.get("error", "")),
            sent_at=float(data["sent_at"]),
            weak=bool(data.get("weak", False)),
        )


# Live scoring: the Try box and the labeling API ------------------------------------
# A live request waits for its answer, so it has its own queue that every model worker consumes
# *first* (``-Q gpu_live,gpu``): it jumps ahead of bulk chunks instead of queueing behind them.
# Its result comes back through the Celery result backend (Redis, or files next to the
# filesystem broker), never as a database write: nothing of it is stored as a job.
SCORE_LIVE_TASK = "worker.score_live"  # queue "gpu_live": LiveRequest -> LiveResult (returned)
LIVE_QUEUE = "gpu_live"


@dataclass(frozen=True)
class LiveRequest:
    """Score ``contents`` under one ``policy`` now; the caller waits for the ``LiveResult``."""

    policy: str
    contents: list[str]
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveRequest:
        _check_version(data)
        contents = data["contents"]
        if not isinstance(contents, list):
            raise ContractError("contents must be a list of strings")
        return cls(policy=str(data["policy"]), contents=[str(c) for c in contents])


@dataclass(frozen=True)
class LiveOutcome:
    """One content's answer: label and p(1), or an error. ``too_long`` marks an item over the
    model's token budget (it was not truncated, and not scored)."""

    label: int | None
    p1: float | None
    error: str = ""
    too_long: bool = False


@dataclass(frozen=True)
class LiveResult:
    outcomes: list[LiveOutcome]  # in the order of the request's contents; empty on ``error``
    worker: WorkerInfo
    model_seconds: float
    error: str = ""  # the whole request failed (the scorer did not load, say)
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveResult:
        _check_version(data)
        return cls(
            outcomes=[
                LiveOutcome(
                    label=None if o["label"] is None else int(o["label"]),
                    p1=None if o["p1"] is None else float(o["p1"]),
                    error=str(o.get("error", "")),
                    too_long=bool(o.get("too_long", False)),
                )
                for o in data["outcomes"]
            ],
            worker=WorkerInfo.from_dict(data["worker"]),
            model_seconds=float(data["model_seconds"]),
            error=str(data.get("error", "")),
        )


# Attribution: which clause decides a label ---------------------------------------------
# The web side builds the policy variants (``worker.variants.build_variants``: bases, clause
# removals, aligned swaps) and sends them with a chunk of items to EXPLAIN_CHUNK_TASK on the
# ``gpu`` queue; the worker scores every item under every variant (sharing the variants' common
# prompt prefix) and sends one ExplainResult to RECORD_EXPLAIN_TASK on ``default``, which the
# web side records idempotently per (run_id, chunk_id). Added within contract 1: an older worker
# does not know the task (the message waits on ``gpu`` until a newer worker takes it).
# Sizing: send every variant of a job in each chunk and split the *items* across chunks (the
# variants' shared prefix and tails are computed once per chunk, the items are the per-score
# cost); a chunk costs about its variants' changed tails plus variants x items short forwards,
# so keep variants x items to a few thousand per chunk (COPE_TASK_SOFT_TIME_LIMIT). Variants
# whose text repeats an earlier one (``worker.variants``' ``same_as``) need not be sent.

# ``margin_from_p1`` clamps p1 to [MARGIN_P1_CLAMP, 1 - MARGIN_P1_CLAMP]: |margin| <= ~16.1.
MARGIN_P1_CLAMP = 1e-7


def margin_from_p1(p1: float) -> float:
    """The answer's logit margin ``logit("1") - logit("0") = log(p1 / (1 - p1))`` from p1,
    for a backend that did not report it; p1 is clamped (``MARGIN_P1_CLAMP``) so 0 and 1 give
    finite values (about -16.1 and +16.1)."""
    p = min(max(float(p1), MARGIN_P1_CLAMP), 1.0 - MARGIN_P1_CLAMP)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class VariantSpec:
    """One policy variant: its key (``worker.variants``: "A", "A-:<clause>", "A<B:<clause>",
    ...; any unique string to the worker) and its full policy text."""

    key: str
    policy: str


@dataclass(frozen=True)
class ExplainRequest:
    """Score every item under every variant (one chunk of one attribution run)."""

    run_id: int  # the web side's attribution run
    chunk_id: int
    variants: list[VariantSpec]  # keys unique within the request
    items: list[ScoreItem]
    attempt: int = 1  # which send of this chunk (a redelivery after a worker died counts up)
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "chunk_id": self.chunk_id,
            "variants": [{"key": v.key, "policy": v.policy} for v in self.variants],
            "items": [{"item_id": i.item_id, "text": i.text} for i in self.items],
            "attempt": self.attempt,
            "contract": self.contract,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExplainRequest:
        _check_version(data)
        variants = [VariantSpec(str(v["key"]), str(v["policy"])) for v in data["variants"]]
        keys = [v.key for v in variants]
        if len(set(keys)) != len(keys):
            raise ContractError("variant keys must be unique within a request")
        return cls(
            run_id=int(data["run_id"]),
            chunk_id=int(data["chunk_id"]),
            variants=variants,
            items=[ScoreItem(int(i["item_id"]), str(i["text"])) for i in data["items"]],
            attempt=int(data.get("attempt", 1)),
        )


@dataclass(frozen=True)
class ExplainResult:
    """The answer to an ExplainRequest: ``outcomes`` variant by variant in the request's
    order, each variant's items in the request's order (len(variants) x len(items)); empty
    with ``error`` set when the whole chunk failed after its retries. ``outcomes`` may be given
    as any sequence and is held as columns (``worker.columns``), its wire form."""

    run_id: int
    chunk_id: int
    outcomes: Sequence[VariantOutcome]
    worker: WorkerInfo
    model_seconds: float
    error: str = ""
    contract: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "chunk_id": self.chunk_id,
            "columns": self.columns.to_dict(),
            "worker": self.worker.to_dict(),
            "model_seconds": self.model_seconds,
            "error": self.error,
            "contract": self.contract,
        }

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcomes", OutcomeColumns.of(self.outcomes))

    @property
    def columns(self) -> OutcomeColumns:
        """The outcomes as columns (as they are held)."""
        assert isinstance(self.outcomes, OutcomeColumns)
        return self.outcomes

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExplainResult:
        """Read an answer; one from a worker that sends a dict per outcome (``"outcomes"``, the
        form before columns, within contract 1) too."""
        _check_version(data)
        if "columns" in data:
            outcomes = OutcomeColumns.from_dict(data["columns"])
        else:
            outcomes = columns_from_rows(data["outcomes"])
        return cls(
            run_id=int(data["run_id"]),
            chunk_id=int(data["chunk_id"]),
            outcomes=outcomes,
            worker=WorkerInfo.from_dict(data["worker"]),
            model_seconds=float(data["model_seconds"]),
            error=str(data.get("error", "")),
        )
