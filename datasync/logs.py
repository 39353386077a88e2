"""Log output of the embedded runtime and the CLI: one stderr handler, levels, noise."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("DATASYNC_LOG_LEVEL") or "INFO").upper()
    root = logging.getLogger()
    if not any(getattr(h, "_datasync", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
        handler._datasync = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("azure", "httpx", "httpcore", "urllib3", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
