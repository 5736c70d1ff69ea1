"""``itbsc report``: the scorecard as one self-contained HTML file (inline CSS and SVG, no network).

Built from the same results as the terminal scorecard: the four perspectives
and their scores, a trend chart per measure over the last periods with its
target line and amber band, the records behind each value (as ``explain``
lists them), manual figures with their provenance, a strategy map of the
objectives and their cause -> effect links, the initiatives, and a banner
on freshness and completeness. Status reads without colour (symbol and word).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Engine

from daemon import report
from daemon.settings import Config
from mapping.catalogue import MetricSpec
from mapping.periods import Period
from mapping.scorecard import MeasureResult, MeasureSpec, Reading

TEMPLATES = Path(__file__).with_name("templates")
STATUS_WORDS = {"green": "OK", "amber": "WARN", "red": "MISS", "grey": "NO DATA"}
STATUS_SYMBOLS = {"green": "●", "amber": "◐", "red": "○", "grey": "·"}
STATUS_COLOURS = {"green": "#2e7d32", "amber": "#b26a00", "red": "#c62828", "grey": "#757575"}
PERSPECTIVE_ORDER = ("financial", "customer", "internal", "learning")  # top to bottom of a map


@dataclass
class Chart:
    svg: Markup
    points: int


@dataclass
class MeasureView:
    result: MeasureResult
    chart: Chart
    records: list[dict[str, Any]] = field(default_factory=list)
    records_total: int = 0
    provenance: list[dict[str, Any]] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    cohort: str = ""


def trend_chart(
    metric: MetricSpec, spec: MeasureSpec, series: list[tuple[str, float | None]], unit: str
) -> Chart:
    """An SVG line of the values with the target line and the amber band; gaps stay gaps."""
    width, height, left, right, top, bottom = 360, 140, 44, 24, 10, 26
    values = [v for _, v in series if v is not None]
    target, amber = spec.target, spec.amber
    band = (target - amber, target) if metric.direction == "higher" else (target, target + amber)
    low = min([*values, band[0], target])
    high = max([*values, band[1], target])
    if high == low:
        high, low = high + 1, low - 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    step = (width - left - right) / max(len(series) - 1, 1)

    def x(i: int) -> float:
        return left + i * step

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(metric.id)} trend with target {target:g}">',
        f'<rect class="amber-band" x="{left}" y="{y(band[1]):.1f}" width="{width - left - right}" '
        f'height="{max(y(band[0]) - y(band[1]), 0.5):.1f}" fill="#ffe0a3" opacity="0.7">'
        f"<title>amber band {band[0]:g} to {band[1]:g} {escape(unit)}</title></rect>",
        f'<line class="target-line" x1="{left}" x2="{width - right}" y1="{y(target):.1f}" '
        f'y2="{y(target):.1f}" stroke="#333" stroke-dasharray="4 3" data-target="{target:g}">'
        f"<title>target {target:g} {escape(unit)}</title></line>",
        f'<text x="2" y="{y(high - pad) + 4:.1f}" class="axis">{_short(high - pad)}</text>',
        f'<text x="2" y="{y(low + pad) + 4:.1f}" class="axis">{_short(low + pad)}</text>',
    ]
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, (_, value) in enumerate(series):
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(value):.1f}")
    if segment:
        segments.append(segment)
    for points in segments:
        parts.append(
            f'<polyline class="series" fill="none" stroke="#1f4e79" stroke-width="2" '
            f'points="{" ".join(points)}"/>'
        )
    for i, (label, value) in enumerate(series):
        if i in (0, len(series) - 1) or len(series) <= 6:
            anchor = "end" if i == len(series) - 1 and i else ("start" if i == 0 else "middle")
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{height - 8}" text-anchor="{anchor}">'
                f"{escape(label)}</text>"
            )
        if value is not None:
            parts.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="#1f4e79" '
                f'data-period="{escape(label)}" data-value="{value:.6g}">'
                f"<title>{escape(label)}: {value:,.2f} {escape(unit)}</title></circle>"
            )
    parts.append("</svg>")
    return Chart(Markup("".join(parts)), len(values))


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def strategy_map(result: Any) -> Markup:
    """The objectives of the four perspectives in rows (financial on top), the cause -> effect
    links as arrows, each box with its status symbol and word."""
    width, row_height, box_w, box_h = 960, 110, 200, 54
    rows = {p.spec.id: p for p in result.perspectives}
    order = [rows[i] for i in PERSPECTIVE_ORDER if i in rows]
    centres: dict[str, tuple[float, float]] = {}
    parts = [
        f'<svg class="strategy-map" viewBox="0 0 {width} {row_height * len(order) + 10}" '
        f'width="100%" role="img" aria-label="strategy map">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
    ]
    for r, perspective in enumerate(order):
        y0 = 10 + r * row_height
        parts.append(
            f'<text class="lane" x="6" y="{y0 + 14}">{escape(perspective.spec.name)}</text>'
            f'<line x1="0" x2="{width}" y1="{y0 + row_height - 6}" y2="{y0 + row_height - 6}" '
            'stroke="#ddd"/>'
        )
        objectives = perspective.objectives
        slot = (width - 140) / max(len(objectives), 1)
        for i, objective in enumerate(objectives):
            status = report.objective_status(objective)
            cx = 140 + slot * i + slot / 2
            cy = y0 + 22 + box_h / 2
            centres[objective.spec.id] = (cx, cy)
            colour = STATUS_COLOURS[status]
            parts.append(
                f'<g class="objective" data-status="{status}">'
                f'<rect x="{cx - box_w / 2:.1f}" y="{cy - box_h / 2:.1f}" width="{box_w}" '
                f'height="{box_h}" rx="8" fill="#fff" stroke="{colour}" stroke-width="2.5"/>'
                f'<text x="{cx:.1f}" y="{cy - 6:.1f}" text-anchor="middle" class="obj">'
                f"{escape(_clip(objective.spec.name, 30))}</text>"
                f'<text x="{cx:.1f}" y="{cy + 14:.1f}" text-anchor="middle" fill="{colour}" '
                f'class="obj-status">{STATUS_SYMBOLS[status]} {STATUS_WORDS[status]}</text></g>'
            )
    for link in result.spec.link:
        if link.cause not in centres or link.effect not in centres:
            continue
        (x1, y1), (x2, y2) = centres[link.cause], centres[link.effect]
        title = f"<title>{escape(link.cause)} → {escape(link.effect)}</title>"
        if y1 == y2:  # same perspective: an arc over the boxes between them
            top_y = y1 - box_h / 2
            lift = top_y - 18
            parts.append(
                f'<path class="link" d="M {x1:.1f} {top_y:.1f} Q {(x1 + x2) / 2:.1f} {lift - 14:.1f} '
                f'{x2:.1f} {top_y:.1f}" fill="none" stroke="#555" stroke-width="1.5" '
                f'marker-end="url(#arrow)">{title}</path>'
            )
            continue
        dy = box_h / 2 if y2 < y1 else -box_h / 2
        parts.append(
            f'<line class="link" x1="{x1:.1f}" y1="{y1 - dy:.1f}" x2="{x2:.1f}" '
            f'y2="{y2 + dy:.1f}" stroke="#555" stroke-width="1.5" marker-end="url(#arrow)">'
            f"{title}</line>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def build_report(
    engine: Engine, config: Config, period: Period, *, periods: int = 12, records: int = 10
) -> str:
    """The whole report as one HTML string."""
    from daemon.explain import explain_metric, explanation_json
    from daemon.inputs import entries

    card = report.build_scorecard(engine, config, period, spark=periods)
    series = card.history
    with engine.connect() as conn:
        inputs = {
            name: [e.__dict__ for e in entries(conn, name)]
            for m in config.catalogue.metric
            if m.manual
            for name in m.inputs
        }
    views: dict[str, MeasureView] = {}
    for perspective in card.result.perspectives:
        for objective in perspective.objectives:
            for measure in objective.measures:
                metric = measure.metric
                points = [
                    (p.label, readings.get(metric.id, Reading(None, 0)).value)
                    for p, readings in series
                ]
                view = MeasureView(measure, trend_chart(metric, measure.spec, points, metric.unit))
                if metric.manual:
                    view.provenance = [
                        e
                        for name in metric.inputs
                        for e in inputs.get(name, [])
                        if e["period"] == period.label
                    ]
                elif metric.composite:
                    view.components = list(metric.of)
                else:
                    data = explanation_json(
                        explain_metric(engine, config, metric.id, period), config
                    )
                    view.records_total = len(data["records"])
                    view.records = data["records"][:records]
                    view.cohort = data["cohort"]
                views[f"{objective.spec.id}:{metric.id}"] = view
    stale = sorted(
        {
            m.stale
            for p in card.result.perspectives
            for o in p.objectives
            for m in o.measures
            if m.stale
        }
    )
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    template = environment.get_template("scorecard.html.j2")
    return template.render(
        card=card,
        result=card.result,
        period=period,
        views=views,
        strategy=strategy_map(card.result),
        freshness=card.freshness,
        stale=stale,
        generated=datetime.now(UTC),
        words=STATUS_WORDS,
        symbols=STATUS_SYMBOLS,
        colours=STATUS_COLOURS,
        objective_status=report.objective_status,
        fmt=report.format_value,
        periods=periods,
    )


def write_report(
    engine: Engine, config: Config, period: Period, output: Path, *, periods: int = 12
) -> Path:
    """Write the report atomically (a reader never sees half a file)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(build_report(engine, config, period, periods=periods), encoding="utf-8")
    partial.replace(output)
    return output
