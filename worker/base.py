"""The interface every labeler backend implements, and the errors they raise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.contract import WorkerInfo


class BackendConfigError(RuntimeError):
    """A backend cannot start with the settings given; the message names the setting to change."""


@dataclass(frozen=True)
class Score:
    """One content's result under one policy: label + probability of ``1``, or an error.

    ``margin`` is the answer's logit margin, ``logit("1") - logit("0")``, where the backend
    knows it (CoPE: read off the logits; the OpenAI-compatible backend: the log-probability
    difference; the embedding baseline: ``K`` x its similarity margin). It ranks attribution
    effects without the saturation of ``p1`` near 0 and 1. None when unknown:
    ``worker.contract.margin_from_p1`` then derives it from ``p1`` (clamped).
    """

    label: int | None
    p1: float | None
    error: str = ""
    margin: float | None = None

    @classmethod
    def from_p1(cls, p1: float, margin: float | None = None) -> Score:
        return cls(label=1 if p1 >= 0.5 else 0, p1=p1, margin=margin)

    @classmethod
    def failed(cls, reason: str) -> Score:
        return cls(label=None, p1=None, error=reason)


class Scorer(Protocol):
    """Labels contents under a policy. Results come back in the order of ``contents``.

    An item that cannot be scored (over the token budget, say) gets ``Score.failed(reason)``;
    it never fails the other items of the call.
    """

    info: WorkerInfo

    def score(self, policy: str, contents: Sequence[str]) -> list[Score]: ...


class VariantScorer(Scorer, Protocol):
    """A scorer that shares work across policy variants (every backend of this package)."""

    def score_variants(self, policies: Sequence[str], contents: Sequence[str]) -> list[list[Score]]:
        """Every content under every policy: one list per policy, in order, each in the order
        of ``contents``. Attribution's common case (many variants of one policy); backends
        share the work the variants have in common (a prefix cache, a request order)."""
        ...


def score_variants(
    scorer: Scorer, policies: Sequence[str], contents: Sequence[str]
) -> list[list[Score]]:
    """``scorer.score_variants`` where the scorer has it, else one ``score`` call per policy
    (a scorer written against the older protocol, such as a test's fake, still explains)."""
    method = getattr(scorer, "score_variants", None)
    if method is not None:
        results: list[list[Score]] = method(policies, contents)
    else:
        results = [scorer.score(policy, contents) for policy in policies]
    if len(results) != len(policies) or any(len(r) != len(contents) for r in results):
        raise RuntimeError(
            f"the scorer returned {[len(r) for r in results]} results for "
            f"{len(policies)} policies x {len(contents)} contents"
        )
    return results


class TwinWriter(Protocol):
    """Writes a twin of a policy: same meaning, same structure, different wording."""

    model_name: str

    def write(self, prompt: str) -> str: ...
