"""How the job pages write a job's figures: percentages, durations, the stats table."""

from __future__ import annotations

from typing import Any

from labeling.agreement import ac1_of

WEAK_NOTE = "labels from the embedding baseline, a weak classifier, not CoPE"


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def stats_display(stats: dict[str, Any]) -> dict[str, Any] | None:
    """Job.stats as the strings the job page shows."""
    if not stats or "n" not in stats:
        return None
    c = stats["confusion"]
    kappa = stats.get("kappa")
    ac1 = ac1_of(stats)
    return {
        "n": stats["n"],
        "agree": stats["agree"],
        "disagree": stats["disagree"],
        "p_o": pct(stats.get("p_o")),
        "kappa": "n/a" if kappa is None else f"{kappa:.3f}",
        "kappa_note": stats.get("kappa_note", ""),
        "ac1": "n/a" if ac1 is None else f"{ac1:.3f}",
        "ci": (
            f"{pct(stats['ci_low'])} – {pct(stats['ci_high'])}"
            if stats.get("ci_low") is not None
            else "—"
        ),
        "pos_a": pct(stats.get("positive_rate_a")),
        "pos_b": pct(stats.get("positive_rate_b")),
        "confusion": c,
        "excluded": sorted(stats.get("excluded", {}).items()),
        "excluded_count": stats.get("excluded_count", 0),
        "total": stats.get("total", stats["n"]),
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
