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
    """One content's result under one policy: label + probability of ``1``, or an error."""

    label: int | None
    p1: float | None
    error: str = ""

    @classmethod
    def from_p1(cls, p1: float) -> Score:
        return cls(label=1 if p1 >= 0.5 else 0, p1=p1)

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


class TwinWriter(Protocol):
    """Writes a twin of a policy: same meaning, same structure, different wording."""

    model_name: str

    def write(self, prompt: str) -> str: ...
