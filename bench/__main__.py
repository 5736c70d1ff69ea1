"""``python -m bench`` (``make bench``): every benchmark, one table of figures and targets."""

from __future__ import annotations

from bench import jira_sync, scorecard, servicenow_sync


def main() -> None:
    rows = servicenow_sync.figures() + jira_sync.figures() + scorecard.figures()
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>10}  {'target':>14}  meets")
    for name, value, target, met in rows:
        verdict = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<{width}}  {value:>10}  {target:>14}  {verdict}")


if __name__ == "__main__":
    main()
