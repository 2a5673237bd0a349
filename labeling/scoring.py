"""How right one side of a job is against gold labels: pure maths, no Django.

For the items with a 0/1 gold label and a 0/1 label from the side, with ``1`` the positive
class (the content meets the policy's labels), the usual definitions (as in scikit-learn):

* accuracy ``(tp + tn) / n``;
* precision ``tp / (tp + fp)``, undefined (``None``) when the side said ``1`` to nothing;
* recall ``tp / (tp + fn)``, undefined when gold has no ``1``;
* F1 ``2·tp / (2·tp + fp + fn)``, undefined when there is no positive on either side.

scikit-learn reports 0.0 with a warning where these are undefined; we say "undefined" rather
than show a made-up number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Below this many gold items the figures move a lot with one item: the pages say so.
FEW_GOLD = 30


@dataclass(frozen=True)
class GoldScore:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def accuracy(self) -> float | None:
        return (self.tp + self.tn) / self.n if self.n else None

    @property
    def precision(self) -> float | None:
        said_one = self.tp + self.fp
        return self.tp / said_one if said_one else None

    @property
    def recall(self) -> float | None:
        gold_one = self.tp + self.fn
        return self.tp / gold_one if gold_one else None

    @property
    def f1(self) -> float | None:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else None

    @property
    def few(self) -> bool:
        return self.n < FEW_GOLD

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            n=self.n,
            accuracy=self.accuracy,
            precision=self.precision,
            recall=self.recall,
            f1=self.f1,
        )
        return data


def score_from_counts(counts: dict[tuple[str | None, int | None], int]) -> GoldScore:
    """A side's score from counts keyed by (gold "0"/"1"/"u"/None, label 0/1/None).

    Only 0/1 gold against a 0/1 label counts; the rest is counted by the caller.
    """
    return GoldScore(
        tp=counts.get(("1", 1), 0),
        fp=counts.get(("0", 1), 0),
        fn=counts.get(("1", 0), 0),
        tn=counts.get(("0", 0), 0),
    )
