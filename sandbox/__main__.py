"""``python -m sandbox``: serve the ServiceNow emulator in the foreground for manual use."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from sandbox.generator import generate
from sandbox.servicenow import ServiceNowInstance, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--count", type=int, default=5000, help="generated incidents")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--end", type=datetime.fromisoformat, help="end of the generated year (ISO, UTC)"
    )
    parser.add_argument(
        "--incidents-only", action="store_true", help="skip changes, SLAs, requests, surveys"
    )
    parser.add_argument(
        "--load", type=Path, help="JSON-lines file of incident records to serve instead"
    )
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="sandbox")
    args = parser.parse_args(argv)
    instance = ServiceNowInstance(users={args.user: args.password})
    if args.load:
        instance.insert_many("sys_user_group", [])
        count = instance.load_jsonl(args.load, "incident")
    else:
        end = args.end.replace(tzinfo=args.end.tzinfo or UTC) if args.end else None
        instance.load(
            generate(args.count, end=end, seed=args.seed, related=not args.incidents_only)
        )
        count = args.count
    running = serve(instance, args.port)
    print(
        f"ServiceNow sandbox with {count} incidents at {running.url} (user {args.user})", flush=True
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
