"""``python -m benchmarks.apis [--latency-ms N] [--max-limit M] ARGS...``: the loopback demo
APIs (``python -m datasync.demo_apis ARGS...``) with every request answered ``N`` ms late,
and source pages of up to ``M`` records (the demo caps them at 1,000).

The server is threaded, so concurrent requests wait side by side (as a real remote API
with that round-trip time would), not one after another.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apis")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-limit", type=int, default=0)
    args, rest = parser.parse_known_args(argv)
    from datasync import demo_apis

    if args.max_limit:
        demo_apis.MAX_LIMIT = args.max_limit
    if args.latency_ms > 0:
        delay = args.latency_ms / 1000.0
        dispatch = demo_apis._Handler._dispatch

        def late(self: Any, method: str) -> None:
            time.sleep(delay)
            dispatch(self, method)

        demo_apis._Handler._dispatch = late  # type: ignore[method-assign]
    return demo_apis.main(rest)


if __name__ == "__main__":
    sys.exit(main())
