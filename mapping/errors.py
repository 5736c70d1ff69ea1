"""Problems found in a mapping, catalogue or scorecard file, reported all at once."""

from __future__ import annotations

from collections.abc import Sequence


class SpecError(Exception):
    """Every problem in one TOML file, each as (dotted key, message)."""

    def __init__(self, path: str, problems: Sequence[tuple[str, str]]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  {path}: {key or '(file)'}: {msg}" for key, msg in self.problems)
        super().__init__(f"{len(self.problems)} problem(s):\n{lines}")
