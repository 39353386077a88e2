"""Benchmark 6: secret masking stays fast with thousands of secrets of any size.

Each case is a fresh process (the registry is process-wide): it registers N PEM-sized
secrets (2 KB: a header, base64 with ``+`` and ``/``, newlines) — or 12-character
passwords — then logs a fixed mix of lines through a logger with redaction installed
(plain text, a percent-encoded URL, JSON with escapes, a short traceback) into a
``StringIO`` handler. Figures: time per log line and per ``redact()`` call for 0, 100
and 10,000 secrets (best of several repeats), their ratio to the 0-secret baseline,
register time per secret, and the process's resident memory. Each case also checks that
a secret in a log line is masked.

``python -m benchmarks.masking --secrets N [--size CHARS]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import string
import sys
import time
import timeit
from typing import Any
from urllib.parse import quote

from .common import Metric, current_rss_mb, run_json

__all__ = ["LINES", "measure", "run"]

LINES = [
    "[acme/contacts] pulled page 3 of contacts (500 records, cursor 2024-05-01T10:00:00Z)",
    (
        "HTTP Request: GET https://api.example.test/v2/contacts?after=2024-05-01T00%3A00%3A00"
        '%2B00%3A00&limit=500 "HTTP/1.1 200 OK"'
    ),
    'pushed {"id": "c-1", "name": "J\\u00f6rg \\"Joe\\" M\\u00fcller"} to erp: 201 Created',
    (
        "page 7 failed: Traceback (most recent call last):\n"
        '  File "/app/flows/contacts.py", line 41, in push\n'
        "    r.raise_for_status()\n"
        "httpx.HTTPStatusError: Server error '503 Service Unavailable' for url "
        "'https://erp.example.test/api/contacts/batch?tenant=acme&page=7'"
    ),
]
BASE64 = string.ascii_letters + string.digits + "+/"


def pem(rng: random.Random, size: int) -> str:
    """A PEM-like secret of about ``size`` characters: the shape private keys have."""
    head, tail = "-----BEGIN PRIVATE KEY-----\n", "\n-----END PRIVATE KEY-----"
    body = "".join(rng.choice(BASE64) for _ in range(max(size - len(head) - len(tail), 8)))
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return head + lines + tail


def password(rng: random.Random, size: int) -> str:
    return "".join(
        rng.choice(string.ascii_letters + string.digits + "!@#$%&*+/ ") for _ in range(size)
    )


def measure(count: int, size: int) -> dict[str, Any]:
    """Register ``count`` secrets of ``size`` characters, then time log lines."""
    from datasync.redact import install_redaction, redact, register_secret

    rng = random.Random(count * 7919 + size)
    make = pem if size >= 100 else password
    values = [make(rng, size) for _ in range(count)]
    started = time.perf_counter()
    for value in values:
        register_secret(value)
    register_s = time.perf_counter() - started

    log = logging.getLogger("benchmarks.masking")
    log.propagate = False
    log.setLevel(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)
    install_redaction(log)

    def log_lines() -> None:
        for line in LINES:
            log.info("%s", line)

    def redact_lines() -> None:
        for line in LINES:
            redact(line)

    number = 300
    per_line = min(timeit.repeat(log_lines, repeat=7, number=number)) / number / len(LINES)
    per_redact = min(timeit.repeat(redact_lines, repeat=7, number=number)) / number / len(LINES)

    masked = True
    if values:  # a secret in a log line, JSON-escaped and percent-encoded, is masked
        stream.seek(0)
        stream.truncate()
        probe = values[len(values) // 2]
        log.info("body %s url ?key=%s", json.dumps(probe), quote(probe, safe=""))
        out = stream.getvalue()
        masked = probe not in out and quote(probe, safe="") not in out and "***" in out
    return {
        "secrets": count,
        "size": size,
        "line_us": per_line * 1e6,
        "redact_us": per_redact * 1e6,
        "register_us": register_s / count * 1e6 if count else 0.0,
        "rss_mb": current_rss_mb(),
        "masked": masked,
    }


def _case(count: int, size: int) -> dict[str, Any]:
    return run_json(
        ["-m", "benchmarks.masking", "--secrets", str(count), "--size", str(size)], timeout=900
    )


def run(quick: bool) -> list[Metric]:
    many = 1_000 if quick else 10_000
    label = f"{many:,}"
    base = _case(0, 2048)
    hundred = _case(100, 2048)
    big = _case(many, 2048)
    short = _case(many, 12)
    ms: list[Metric] = [
        Metric.report("masking.log line, 0 secrets", base["line_us"], "µs/line"),
        Metric.report("masking.log line, 100 secrets of 2 KB", hundred["line_us"], "µs/line"),
        Metric.report(f"masking.log line, {label} secrets of 2 KB", big["line_us"], "µs/line"),
        Metric.report(
            f"masking.log line, {label} secrets of 12 chars", short["line_us"], "µs/line"
        ),
        Metric.check(
            "masking.log line 100 secrets ÷ 0 secrets",
            hundred["line_us"] / base["line_us"],
            "×",
            "<",
            3.0,
        ),
        Metric.check(
            f"masking.log line {label} secrets ÷ 0 secrets",
            big["line_us"] / base["line_us"],
            "×",
            "<",
            3.0,
        ),
        Metric.check(
            f"masking.log line {label} ÷ 100 secrets (independent of count)",
            big["line_us"] / hundred["line_us"],
            "×",
            "<=",
            1.3,
        ),
        Metric.check(
            f"masking.log line {label} 12-char secrets ÷ 0 secrets",
            short["line_us"] / base["line_us"],
            "×",
            "<",
            5.0,
        ),
        Metric.report(
            f"masking.redact() per line, {label} secrets of 2 KB", big["redact_us"], "µs"
        ),
        Metric.check("masking.register one 2 KB secret", big["register_us"], "µs", "<", 1000.0),
        Metric.report(f"masking.RSS with {label} secrets of 2 KB", big["rss_mb"], "MB"),
        Metric.check(
            "masking.secret in a log line masked (all cases)",
            float(all(c["masked"] for c in (hundred, big, short))),
            "bool",
            ">=",
            1.0,
        ),
    ]
    return ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.masking")
    parser.add_argument("--secrets", type=int, required=True)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.secrets, args.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
