"""The scorecard: perspectives -> objectives -> measures with targets, RAG status and weighted scores.

Scoring rule (documented in the README): a measure scores 100 at or beyond
its target, 50 at the edge of its amber band and 0 at twice that distance;
objective, perspective and overall scores are weighted means over the parts
that have data. A measure without enough data is Grey and counts in no score:
the scorecard never invents a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mapping.catalogue import Catalogue, MetricSpec
from mapping.errors import SpecError
from mapping.tomlfile import read_toml, validate

PerspectiveId = Literal["customer", "financial", "internal", "learning"]
PERSPECTIVES: tuple[PerspectiveId, ...] = ("customer", "financial", "internal", "learning")
Status = Literal["green", "amber", "red", "grey"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasureSpec(_Strict):
    metric: str
    target: float
    amber: float = Field(default=0.0, ge=0, description="width of the amber band beyond target")
    weight: float = Field(default=1.0, gt=0)
    min_n: int = Field(default=1, ge=1, description="fewer records than this -> Grey")


class InitiativeSpec(_Strict):
    """What is being done to move an objective: who owns it, by when, how it is going."""

    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    due: date
    status: Literal["planned", "on_track", "at_risk", "late", "done"] = "planned"


class ObjectiveSpec(_Strict):
    id: str
    name: str
    weight: float = Field(default=1.0, gt=0)
    measure: list[MeasureSpec] = Field(default_factory=list)
    initiative: list[InitiativeSpec] = Field(default_factory=list)


class LinkSpec(_Strict):
    """A cause -> effect hypothesis between objectives (the strategy map's arrows)."""

    cause: str
    effect: str


class PerspectiveSpec(_Strict):
    id: PerspectiveId
    name: str
    question: str = ""
    weight: float = Field(default=1.0, gt=0)
    objective: list[ObjectiveSpec] = Field(default_factory=list)


class ScorecardSpec(_Strict):
    title: str = "IT Balanced Scorecard"
    perspective: list[PerspectiveSpec]
    link: list[LinkSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _all_four_once(self) -> ScorecardSpec:
        ids = [p.id for p in self.perspective]
        missing = [p for p in PERSPECTIVES if p not in ids]
        repeated = sorted({p for p in ids if ids.count(p) > 1})
        if missing or repeated:
            raise ValueError(
                "a balanced scorecard has each of the four perspectives once"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; repeated: {', '.join(repeated)}" if repeated else "")
            )
        objectives = [o.id for p in self.perspective for o in p.objective]
        twice = sorted({o for o in objectives if objectives.count(o) > 1})
        if twice:
            raise ValueError(f"objective ids must be unique; repeated: {', '.join(twice)}")
        for i, link in enumerate(self.link):
            unknown = [x for x in (link.cause, link.effect) if x not in objectives]
            if unknown:
                raise ValueError(f"link[{i}]: unknown objective(s) {', '.join(unknown)}")
            if link.cause == link.effect:
                raise ValueError(f"link[{i}]: an objective cannot cause itself")
        return self

    def metric_ids(self) -> list[str]:
        return [m.metric for p in self.perspective for o in p.objective for m in o.measure]


def load_scorecard(path: Path, catalogue: Catalogue) -> ScorecardSpec:
    """Load the scorecard and check that every measure names a catalogue metric."""
    spec = validate(ScorecardSpec, read_toml(path), path)
    known = catalogue.by_id()
    problems = []
    for pi, perspective in enumerate(spec.perspective):
        for oi, objective in enumerate(perspective.objective):
            for mi, measure in enumerate(objective.measure):
                if measure.metric not in known:
                    problems.append(
                        (
                            f"perspective[{pi}].objective[{oi}].measure[{mi}].metric",
                            f"unknown metric {measure.metric!r} (the catalogue has "
                            f"{', '.join(sorted(known))})",
                        )
                    )
    if problems:
        raise SpecError(str(path), problems)
    return spec


# -- evaluation ---------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A metric's value in one period, as the scorecard needs it."""

    value: float | None
    n: int
    stale: str | None = None
    """Why the data behind it may be out of date (a source not synced for too long): Grey."""


@dataclass
class MeasureResult:
    metric: MetricSpec
    spec: MeasureSpec
    value: float | None
    n: int
    status: Status
    score: float | None
    previous: float | None
    trend: Literal["up", "down", "flat", "none"]
    better: bool | None
    stale: str | None = None


@dataclass
class ObjectiveResult:
    spec: ObjectiveSpec
    measures: list[MeasureResult]
    score: float | None


@dataclass
class PerspectiveResult:
    spec: PerspectiveSpec
    objectives: list[ObjectiveResult]
    score: float | None


@dataclass
class ScorecardResult:
    spec: ScorecardSpec
    perspectives: list[PerspectiveResult]
    score: float | None
    notes: list[str] = field(default_factory=list)


def status_of(value: float | None, n: int, spec: MeasureSpec, direction: str) -> Status:
    if value is None or n < spec.min_n:
        return "grey"
    gap = (spec.target - value) if direction == "higher" else (value - spec.target)
    if gap <= 0:
        return "green"
    return "amber" if gap <= spec.amber else "red"


def normalised_score(value: float, spec: MeasureSpec, direction: str) -> float:
    """100 at or beyond target, 50 at the amber edge, 0 at twice the band (or 10% of target)."""
    gap = (spec.target - value) if direction == "higher" else (value - spec.target)
    if gap <= 0:
        return 100.0
    band = spec.amber or abs(spec.target) * 0.1 or 1.0
    return max(0.0, 100.0 - 50.0 * gap / band)


def _weighted(parts: Sequence[tuple[float | None, float]]) -> float | None:
    scored = [(s, w) for s, w in parts if s is not None]
    total = sum(w for _, w in scored)
    return sum(s * w for s, w in scored) / total if total else None


def _trend(value: float | None, previous: float | None, direction: str) -> tuple[str, bool | None]:
    if value is None or previous is None:
        return "none", None
    if abs(value - previous) < 1e-9:
        return "flat", None
    up = value > previous
    return ("up" if up else "down"), (up if direction == "higher" else not up)


def evaluate_scorecard(
    spec: ScorecardSpec,
    catalogue: Catalogue,
    current: Mapping[str, Reading],
    previous: Mapping[str, Reading],
) -> ScorecardResult:
    """Statuses, scores and trends for one period from the metrics' readings."""
    metrics = catalogue.by_id()
    perspectives = []
    for p in spec.perspective:
        objectives = []
        for o in p.objective:
            measures = [_measure(metrics[m.metric], m, current, previous) for m in o.measure]
            score = _weighted([(r.score, r.spec.weight) for r in measures])
            objectives.append(ObjectiveResult(o, measures, score))
        score = _weighted([(r.score, r.spec.weight) for r in objectives])
        perspectives.append(PerspectiveResult(p, objectives, score))
    overall = _weighted([(r.score, r.spec.weight) for r in perspectives])
    notes = [
        f"{r.spec.name}: no data yet — not counted in the overall score"
        for r in perspectives
        if r.score is None
    ]
    return ScorecardResult(spec, perspectives, overall, notes)


def _measure(
    metric: MetricSpec,
    spec: MeasureSpec,
    current: Mapping[str, Reading],
    previous: Mapping[str, Reading],
) -> MeasureResult:
    now = current.get(metric.id, Reading(None, 0))
    before = previous.get(metric.id, Reading(None, 0))
    status = "grey" if now.stale else status_of(now.value, now.n, spec, metric.direction)
    score = (
        normalised_score(now.value, spec, metric.direction)
        if status != "grey" and now.value is not None
        else None
    )
    prev_value = before.value if before.n >= spec.min_n else None
    trend, better = _trend(now.value if status != "grey" else None, prev_value, metric.direction)
    return MeasureResult(
        metric,
        spec,
        now.value,
        now.n,
        status,
        score,
        prev_value,
        trend,  # type: ignore[arg-type]
        better,
        now.stale,
    )
