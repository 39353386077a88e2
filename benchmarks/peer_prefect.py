"""Run by ``.venv-peers/bin/python`` (not the project venv): the benchmark sync as a
Prefect 3 flow with one task per step (a ``pull`` task and a ``push`` task per page).

``python benchmarks/peer_prefect.py URL TENANT PAGE_SIZE SOURCE_TOKEN TARGET_TOKEN`` prints
one JSON line ``{"records", "pages", "seconds"}`` (seconds of the flow run, after a
warm-up flow has started Prefect's ephemeral API).
"""

from __future__ import annotations

import json
import sys
import time

import httpx
from prefect import flow, task

URL, TENANT, PAGE_SIZE, SOURCE_TOKEN, TARGET_TOKEN = sys.argv[1:6]
client = httpx.Client(timeout=30)


@task
def pull(cursor: str) -> dict:
    r = client.get(
        f"{URL}/{TENANT}/contacts",
        params={"after": cursor, "limit": int(PAGE_SIZE)},
        headers={"Authorization": f"Bearer {SOURCE_TOKEN}"},
    )
    r.raise_for_status()
    return r.json()


@task
def push(records: list, page: int) -> int:
    client.post(
        f"{URL}/{TENANT}/batch",
        json={"records": records},
        headers={"Idempotency-Key": f"prefect/{page}", "Authorization": f"Bearer {TARGET_TOKEN}"},
    ).raise_for_status()
    return len(records)


@flow(persist_result=False)
def sync() -> dict:
    moved, pages, cursor = 0, 0, ""
    while True:
        body = pull(cursor)
        pages += 1
        if body["items"]:
            moved += push(body["items"], pages)
        cursor = body["next"] or cursor
        if not body["more"]:
            return {"records": moved, "pages": pages}


@flow
def warm_up() -> int:
    return 1


if __name__ == "__main__":
    warm_up()
    started = time.perf_counter()
    out = sync()
    print(json.dumps({**out, "seconds": time.perf_counter() - started}))
