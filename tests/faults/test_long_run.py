"""A long run: ~2,000 tiny pages with continue_as_new every 50 keeps the orchestration
history bounded and the runtime's memory flat, and moves every page exactly once."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import DUE_ID, flow_entry, tenant_doc

pytestmark = pytest.mark.faults

PAGES = 2000
PER_GENERATION = 50
INSTANCE = f"Workflow-acme--tiny-{DUE_ID}"

TINY_FLOW = '''
from datasync import Page, flow


@flow("tiny")
class Tiny:
    """One record per page, no HTTP: the runtime's own cost per page."""

    def pull(self, ctx, cursor):
        n = int(cursor or 0) + 1
        return Page(records=[{"id": n}], cursor=n, has_more=n < ctx.config["pages"])

    def push(self, ctx, records):
        with open(ctx.config["out"], "a") as fh:
            fh.write("%s %s\\n" % (ctx.page_key, records[0]["id"]))
'''


def _kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.timeout(300)  # 2000 pages through the runtime
def test_history_stays_bounded_and_memory_flat_over_2000_pages(project):
    out = project.tmp / "pushed.txt"
    project.write_flow("tiny.py", TINY_FLOW)
    project.apply(tenant_doc("acme", flow_entry("tiny", {"pages": PAGES, "out": str(out)})))
    runtime = project.start(
        "--once", DATASYNC_PAGES_PER_GENERATION=str(PER_GENERATION), DATASYNC_LOG_LEVEL="WARNING"
    )
    max_history, peak_at_500, peak = 0, None, 0
    samples: list[tuple[int, int]] = []  # (pages pushed, RSS kB)
    deadline = time.time() + 150
    while not runtime.exited():
        assert time.time() < deadline, "the long run took too long"
        try:
            [(events,)] = project.sql(
                "durable.db", "SELECT count(*) FROM history WHERE instance_id = ?", INSTANCE
            )
            peak = max(peak, _kb(runtime.pid, "VmHWM"))
            done = out.read_text().count("\n") if out.exists() else 0
            samples.append((done, _kb(runtime.pid, "VmRSS")))
        except (FileNotFoundError, ProcessLookupError, AssertionError, ValueError):
            continue  # exiting, or not started yet
        except Exception as exc:  # the database is being created
            if "no such table" in str(exc):
                continue
            raise
        max_history = max(max_history, events)
        if peak_at_500 is None and done >= 500:
            peak_at_500 = peak
        time.sleep(0.25)
    assert runtime.proc.returncode == 0, runtime.stderr()[-3000:]
    # (not rusage's ru_maxrss: on Linux it keeps the pre-exec high-water mark, i.e. the
    # size of the forking pytest process)

    lines = out.read_text().splitlines()
    ids = sorted(int(line.split()[1]) for line in lines)
    assert ids == list(range(1, PAGES + 1))  # every page once, none twice
    assert len({line.split()[0] for line in lines}) == PAGES
    [run] = project.runs()
    assert (run["status"], run["pages"], run["recordsIn"]) == ("Completed", PAGES, PAGES)

    [(generation,)] = project.sql(
        "durable.db", "SELECT generation FROM instances WHERE instance_id = ?", INSTANCE
    )
    assert generation >= PAGES // PER_GENERATION - 1
    # one generation: ~12 events per page (3 activities) — never the whole run's 24,000
    assert 0 < max_history <= PER_GENERATION * 14, max_history
    assert peak_at_500 is not None
    growth = peak - peak_at_500
    assert growth < max(8 * 1024, peak_at_500 // 10), (peak_at_500, peak, samples[::20])
