"""RAG status, normalised scores, weighted roll-ups and scorecard validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.defaults import config_dir
from mapping.catalogue import Catalogue, load_catalogue
from mapping.errors import SpecError
from mapping.scorecard import (
    MeasureSpec,
    Reading,
    evaluate_scorecard,
    load_scorecard,
    normalised_score,
    status_of,
)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(config_dir() / "metrics.toml")


@pytest.mark.parametrize(
    ("value", "direction", "status"),
    [
        (96.0, "higher", "green"),
        (95.0, "higher", "green"),
        (92.0, "higher", "amber"),
        (89.0, "higher", "red"),
        (94.0, "lower", "green"),
        (99.0, "lower", "amber"),
        (101.0, "lower", "red"),
    ],
)
def test_status_against_target_and_amber_band(value: float, direction: str, status: str) -> None:
    assert status_of(value, 100, MeasureSpec(metric="X", target=95, amber=5), direction) == status


def test_too_few_records_is_grey() -> None:
    assert status_of(99.0, 5, MeasureSpec(metric="X", target=95, min_n=20), "higher") == "grey"


def test_score_is_100_at_target_50_at_band_edge_0_beyond() -> None:
    spec = MeasureSpec(metric="X", target=16, amber=8)
    assert normalised_score(10, spec, "lower") == 100
    assert normalised_score(24, spec, "lower") == 50
    assert normalised_score(40, spec, "lower") == 0


def test_roll_up_ignores_grey_and_reports_perspectives_without_data(catalogue: Catalogue) -> None:
    spec = load_scorecard(config_dir() / "scorecard.toml", catalogue)
    current = {"C1": Reading(100.0, 50), "C4": Reading(2.0, 50), "I1": Reading(None, 0)}
    result = evaluate_scorecard(spec, catalogue, current, {})
    by_id = {p.spec.id: p for p in result.perspectives}
    assert by_id["customer"].score == 100
    assert by_id["internal"].score is None
    assert result.score == 100
    assert any("Financial" in note for note in result.notes)


def test_scorecard_naming_an_unknown_metric_is_refused(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    text = (config_dir() / "scorecard.toml").read_text().replace('metric = "C4"', 'metric = "C99"')
    (tmp_path / "scorecard.toml").write_text(text)
    with pytest.raises(SpecError) as info:
        load_scorecard(tmp_path / "scorecard.toml", catalogue)
    assert "C99" in str(info.value)
    assert "measure[0].metric" in str(info.value)


def test_scorecard_needs_all_four_perspectives(tmp_path: Path, catalogue: Catalogue) -> None:
    (tmp_path / "s.toml").write_text('[[perspective]]\nid = "customer"\nname = "Customer"\n')
    with pytest.raises(SpecError, match="missing: financial, internal, learning"):
        load_scorecard(tmp_path / "s.toml", catalogue)


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (
            'cause = "develop-people"',
            'cause = "no-such-objective"',
            "unknown objective(s) no-such-objective",
        ),
        ('cause = "develop-people"', 'cause = "fix-it-first-time"', "cannot cause itself"),
        ('status = "on_track"', 'status = "green"', "status"),
        ("due = 2027-03-31", 'due = "soon"', "due"),
    ],
)
def test_links_and_initiatives_are_checked(
    tmp_path: Path, catalogue: Catalogue, old: str, new: str, words: str
) -> None:
    text = (config_dir() / "scorecard.toml").read_text()
    assert old in text
    (tmp_path / "scorecard.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(SpecError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_scorecard(tmp_path / "scorecard.toml", catalogue)


def test_shipped_scorecard_carries_initiatives_and_links(catalogue: Catalogue) -> None:
    spec = load_scorecard(config_dir() / "scorecard.toml", catalogue)
    initiatives = [i for p in spec.perspective for o in p.objective for i in o.initiative]
    assert initiatives and all(i.owner and i.due for i in initiatives)
    assert ("fix-it-first-time", "satisfied-users") in {(x.cause, x.effect) for x in spec.link}
