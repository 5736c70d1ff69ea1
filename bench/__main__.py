"""``python -m bench``: every benchmark, one table of figures."""

from __future__ import annotations

from bench.sync_servicenow import run

if __name__ == "__main__":
    run()
