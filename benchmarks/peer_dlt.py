"""Run by ``.venv-peers/bin/python`` (not the project venv): the benchmark sync as a dlt
pipeline — a resource pulling the source's pages, loaded into a local duckdb file.

``python benchmarks/peer_dlt.py URL TENANT PAGE_SIZE SOURCE_TOKEN WORKDIR`` prints one JSON
line ``{"records", "pages", "seconds"}`` (seconds of ``pipeline.run``: extract, normalize
and load).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dlt
import httpx

URL, TENANT, PAGE_SIZE, SOURCE_TOKEN, WORKDIR = sys.argv[1:6]
pages = 0


@dlt.resource(name="contacts", write_disposition="append")
def contacts():
    global pages
    cursor = ""
    with httpx.Client(timeout=30) as client:
        while True:
            r = client.get(
                f"{URL}/{TENANT}/contacts",
                params={"after": cursor, "limit": int(PAGE_SIZE)},
                headers={"Authorization": f"Bearer {SOURCE_TOKEN}"},
            )
            r.raise_for_status()
            body = r.json()
            pages += 1
            yield body["items"]
            cursor = body["next"] or cursor
            if not body["more"]:
                return


if __name__ == "__main__":
    work = Path(WORKDIR)
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=str(work / "pipelines"),
        destination=dlt.destinations.duckdb(str(work / "bench.duckdb")),
        dataset_name="crm",
    )
    started = time.perf_counter()
    pipeline.run(contacts())
    seconds = time.perf_counter() - started
    with pipeline.sql_client() as sql:
        records = sql.execute_sql("SELECT count(*) FROM contacts")[0][0]
    print(json.dumps({"records": records, "pages": pages, "seconds": seconds}))
