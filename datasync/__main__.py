"""``python -m datasync …`` — the same as the ``datasync`` console script."""

from __future__ import annotations

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
