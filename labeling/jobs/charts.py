"""Server-rendered inline SVG charts (no JavaScript library).

``agreement_chart`` draws percent agreement and Cohen's kappa per version number, with the
policy's threshold as a dashed line, and F1 of the primary text against gold next to them where
the deciding job has gold labels, and the share of expected flips its probe observed
(steerability, ``labeling.probes``) where the version was probed, so the story of a policy reads
at a glance: agreement says the wording is unambiguous, F1 says it is right, steerability says
the model reads the words rather than the topic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from policies.models import percent_text

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 150, 16, 36
AGREEMENT_COLOR = "#2f5bd3"
KAPPA_COLOR = "#a15c00"
THRESHOLD_COLOR = "#b3261e"
F1_COLOR = "#1e7a46"
STEER_COLOR = "#7b3fa0"


@dataclass(frozen=True)
class ChartPoint:
    version_number: int
    p_o: float | None
    kappa: float | None
    n: int
    job_id: int | None = None
    f1: float | None = None  # side A against gold; None without gold
    gold_n: int = 0
    # The version's probe: the share of expected flips observed, over ``steer_n`` expected.
    steerability: float | None = None
    steer_n: int = 0


def _fmt(x: float) -> str:
    return f"{x:.1f}"


@dataclass(frozen=True)
class _Frame:
    """Where a value and a version's place land in the plot area."""

    count: int  # versions shown
    y_min: float
    y_max: float = 1.0

    @property
    def plot_w(self) -> int:
        return WIDTH - LEFT - RIGHT

    def x_at(self, i: int) -> float:
        if self.count == 1:
            return LEFT + self.plot_w / 2
        return LEFT + self.plot_w * i / (self.count - 1)

    def y_at(self, v: float) -> float:
        plot_h = HEIGHT - TOP - BOTTOM
        return TOP + plot_h * (self.y_max - v) / (self.y_max - self.y_min)


def agreement_chart(points: list[ChartPoint], threshold: float, *, title: str = "") -> SafeString:
    """An SVG line chart; versions with neither a deciding job nor a probe are left out."""
    shown = [p for p in points if p.p_o is not None or p.steerability is not None]
    label = title or "Agreement between the wordings, by version"
    if not shown:
        return mark_safe(
            '<p class="muted chart-empty">No deciding job yet: the chart shows, for each '
            "version, its latest succeeded job against its twin on the policy's evaluation set "
            "with at least the minimum sample labeled.</p>"
        )
    values = [p.p_o for p in shown if p.p_o is not None]
    values += [p.kappa for p in shown if p.kappa is not None]
    values += [p.f1 for p in shown if p.f1 is not None]
    values += [p.steerability for p in shown if p.steerability is not None]
    frame = _Frame(count=len(shown), y_min=min(0.0, math.floor(min(values) * 10) / 10))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        *_grid(frame, threshold),
        *_version_labels(frame, shown),
        *_series(frame, shown),
        *_legend(
            threshold,
            with_f1=any(p.f1 is not None for p in shown),
            with_steer=any(p.steerability is not None for p in shown),
        ),
        "</svg>",
    ]
    return mark_safe("".join(parts))  # noqa: S308 - numbers and escaped text only


def _grid(frame: _Frame, threshold: float) -> list[str]:
    parts = []
    tick = frame.y_min
    while tick <= frame.y_max + 1e-9:
        y = frame.y_at(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + frame.plot_w}" y1="{_fmt(y)}" y2="{_fmt(y)}" '
            'stroke="#dfe3ea" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end" font-size="11" '
            f'fill="#5d6677">{tick:.1f}</text>'
        )
        wide = frame.y_max - frame.y_min > 0.6
        tick = round(tick + 0.2, 10) if wide else round(tick + 0.1, 10)
    ty = frame.y_at(threshold)
    parts.append(
        f'<line class="threshold" x1="{LEFT}" x2="{LEFT + frame.plot_w}" y1="{_fmt(ty)}" '
        f'y2="{_fmt(ty)}" stroke="{THRESHOLD_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
    )
    return parts


def _version_labels(frame: _Frame, shown: list[ChartPoint]) -> list[str]:
    return [
        f'<text x="{_fmt(frame.x_at(i))}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
        f'font-size="12" fill="#1d2330">v{p.version_number}</text>'
        for i, p in enumerate(shown)
    ]


def _series(frame: _Frame, shown: list[ChartPoint]) -> list[str]:
    parts = []
    for key, color, name in (
        ("p_o", AGREEMENT_COLOR, "agreement"),
        ("kappa", KAPPA_COLOR, "kappa"),
        ("f1", F1_COLOR, "f1"),
        ("steerability", STEER_COLOR, "steerability"),
    ):
        coords = [
            (frame.x_at(i), frame.y_at(getattr(p, key)), p)
            for i, p in enumerate(shown)
            if getattr(p, key) is not None
        ]
        if len(coords) > 1:
            path = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y, _ in coords)
            parts.append(
                f'<polyline class="series-{name}" points="{path}" fill="none" '
                f'stroke="{color}" stroke-width="2.5"/>'
            )
        for x, y, p in coords:
            value = getattr(p, key)
            shown_value = f"{value:.1%}" if key in ("p_o", "steerability") else f"{value:.3f}"
            n = {"f1": p.gold_n, "steerability": p.steer_n}.get(key, p.n)
            what = {"f1": "F1 against gold", "steerability": "expected flips observed"}.get(
                key, name
            )
            few = " — under 30 gold items" if key == "f1" and n < 30 else ""
            parts.append(
                f'<circle class="point-{name}" cx="{_fmt(x)}" cy="{_fmt(y)}" r="4" '
                f'fill="{color}"><title>v{p.version_number} {what}: {shown_value} '
                f"(n={n}{few})</title></circle>"
            )
    return parts


def _legend(threshold: float, *, with_f1: bool, with_steer: bool = False) -> list[str]:
    lx = LEFT + WIDTH - LEFT - RIGHT + 14
    parts = [
        f'<line x1="{lx}" x2="{lx + 22}" y1="{TOP + 10}" y2="{TOP + 10}" '
        f'stroke="{AGREEMENT_COLOR}" stroke-width="2.5"/>'
        f'<text x="{lx + 28}" y="{TOP + 14}" font-size="12" fill="#1d2330">% agreement</text>'
        f'<line x1="{lx}" x2="{lx + 22}" y1="{TOP + 30}" y2="{TOP + 30}" '
        f'stroke="{KAPPA_COLOR}" stroke-width="2.5"/>'
        f'<text x="{lx + 28}" y="{TOP + 34}" font-size="12" fill="#1d2330">Cohen’s kappa</text>'
        f'<line x1="{lx}" x2="{lx + 22}" y1="{TOP + 50}" y2="{TOP + 50}" '
        f'stroke="{THRESHOLD_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        f'<text x="{lx + 28}" y="{TOP + 54}" font-size="12" fill="#1d2330">'
        f"threshold {percent_text(threshold)}</text>"
    ]
    if with_f1:
        parts.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{TOP + 70}" y2="{TOP + 70}" '
            f'stroke="{F1_COLOR}" stroke-width="2.5"/>'
            f'<text x="{lx + 28}" y="{TOP + 74}" font-size="12" fill="#1d2330">'
            "F1 of A vs gold</text>"
        )
    if with_steer:
        y = TOP + (90 if with_f1 else 70)
        parts.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{y}" y2="{y}" '
            f'stroke="{STEER_COLOR}" stroke-width="2.5"/>'
            f'<text x="{lx + 28}" y="{y + 4}" font-size="12" fill="#1d2330">'
            "steerability (flips)</text>"
        )
    return parts
