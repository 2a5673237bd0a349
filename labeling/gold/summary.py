from __future__ import annotations

from typing import Any

from labeling.gold import audit, items
from labeling.gold import services as gold
from labeling.jobs import comparisons
from labeling.models import Job
from labeling.scoring import FEW_GOLD


def gold_context(job: Job) -> dict[str, Any]:
    """What the job page shows about gold: per-side figures and the first misses."""
    if job.is_active:
        return {"gold": None, "flips": None}
    report = gold.job_gold_report(job)
    sides = []
    for side in ("A", "B"):
        s = report.sides[side]
        fps = gold.misses(job, side=side, kind="fp") if s.score.fp else []
        fns = gold.misses(job, side=side, kind="fn") if s.score.fn else []
        sides.append(
            {
                "side": side,
                "name": f"A (v{job.version.number})"
                if side == "A"
                else f"B ({comparisons.side_b_name(job)})",
                "s": s,
                "lists": [
                    ("fp", fps, s.score.fp, f"false positive{_s(s.score.fp)} (said 1, gold 0)"),
                    ("fn", fns, s.score.fn, f"false negative{_s(s.score.fn)} (said 0, gold 1)"),
                ],
            }
        )
    return {
        "gold": report,
        "gold_sides": sides,
        "few_gold": FEW_GOLD,
        # Beside F1: the gold labels both wordings confidently contradict (a capped count).
        "gold_audit": audit.suspect_count(job) if report.has_gold else None,
        **compare_context(job),
    }


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def compare_context(job: Job) -> dict[str, Any]:
    """For a job whose B was another version or pasted text: the items whose label flipped."""
    if job.compare_kind == "twin":
        return {"flips": None}
    b = comparisons.side_b_name(job)
    a = f"A (v{job.version.number})"
    flips = []
    for key, title in (
        ("only_a", f"{a} said 1, B ({b}) said 0"),
        ("only_b", f"{a} said 0, B ({b}) said 1"),
    ):
        rows = items.apply_filters(items.job_rows(job), {"said": key}).order_by("item_id")
        flips.append(
            (title, key, gold.add_item_fields(list(rows.values("item_id", "p1", "p1_b")[:10])))
        )
    return {"flips": flips, "side_b_name": b}
