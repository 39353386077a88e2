"""The stores never lose data: a secret store DataSync does not understand is refused and
left as it is; a full disk makes `secrets set` and runs fail with a clear error, leaves no
copy of a secret behind, and once space returns every record arrives, exactly once.

A full disk is real here: DATASYNC_HOME is a small tmpfs, filled with a filler file until
the kernel answers ENOSPC, and "space returns" is deleting the filler. Mounting needs root
(CI runs as root on this machine); elsewhere these tests skip and say why. RLIMIT_FSIZE
would work without root, but it fails writes with EFBIG (SQLite: "disk I/O error"), not
the ENOSPC a full disk gives ("database or disk is full"), and it limits the log files too.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Project, job, setup_gated, wait_for

pytestmark = pytest.mark.faults


class Disk:
    """A tmpfs mounted on a directory, and a filler file to make it full."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler.bin"

    def fill(self, leave: int = 0) -> None:
        """Fill the disk, then give back ``leave`` bytes."""
        chunk = b"\0" * 65536
        with open(self.filler, "ab", buffering=0) as out:
            try:
                while True:
                    out.write(chunk)
            except OSError:  # ENOSPC: full
                pass
        with contextlib.suppress(OSError), open(self.filler, "ab", buffering=0) as out:
            while True:  # the last partial block
                out.write(b"\0")
        if leave:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path) -> Iterator[Disk]:
    home = tmp_path / "home"
    home.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs mount (root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(home)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield Disk(home)
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)


@pytest.fixture
def full_project(disk, tmp_path) -> Iterator[Project]:
    proj = Project(tmp_path)
    assert proj.home == disk.path
    try:
        yield proj
    finally:
        proj.stop_all()


NOT_UNDERSTOOD = {  # a store written by something else, or by a later DataSync
    "flat": b'{"tenants--acme--src--token": "acme-old-value"}',
    "list": b'["acme-old-value"]',
    "future": b'{"version": 2, "secrets": {"tenants--acme--src--token": "acme-old-value"}}',
    "encrypted": b'{"version": 1, "encrypted": "acme-old-value", "secrets": {}}',
    "not-json": b'{"secrets": {"tenants--acme--src--token": "acme-old-value"',
    "binary": b"\x00\xffacme-old-value",
}


@pytest.mark.parametrize("kind", sorted(NOT_UNDERSTOOD))
def test_secrets_set_refuses_a_store_it_does_not_understand(project, apis, kind):
    setup_gated(project, apis, "acme", 1)
    path = project.home / "secrets.json"
    path.write_bytes(NOT_UNDERSTOOD[kind])
    path.chmod(0o600)
    proc = project.cli("secrets", "set", "acme", "dst", "token", stdin="acme-new-value\n", check=2)
    assert proc.stderr.startswith("error: ") and "refusing to use it" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert path.read_bytes() == NOT_UNDERSTOOD[kind]  # byte-identical
    written = project.everything_written()
    assert "acme-old-value" not in written and "acme-new-value" not in written
    runtime = project.run_once(expect=1)  # a run cannot read its secrets: it fails, clearly
    [run] = project.runs()
    assert run["status"] == "Failed" and "refusing to use it" in run["error"], run
    assert "acme-old-value" not in runtime.stderr()
    assert path.read_bytes() == NOT_UNDERSTOOD[kind]


BIG = "acme-crm-value-" + "k" * 256 * 1024  # a store bigger than the space left


def test_secrets_set_on_a_full_disk_fails_cleanly_and_leaves_no_copy(full_project, disk, apis):
    project = full_project
    setup_gated(project, apis, "acme", 1)
    project.secret("acme", "crm", "token", BIG)
    path = project.home / "secrets.json"
    before = path.read_bytes()

    def refused(leave: int, says: str) -> None:
        disk.fill(leave)
        proc = project.cli(
            "secrets", "set", "acme", "erp", "token", stdin="acme-erp-value\n", check=None
        )
        assert proc.returncode == 1, proc.stderr  # 1: it failed; try again when there is room
        assert proc.stderr.startswith("error: ") and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
        assert path.read_bytes() == before
        leftovers = [p.name for p in project.home.iterdir() if "secret" in p.name]
        assert sorted(leftovers) == ["secrets.json", "secrets.lock"]  # no temp copy
        written = project.everything_written()
        for value in ("acme-crm-value", "acme-erp-value", "acme-src-token"):
            assert value not in written, value
        disk.free()

    # room to open the databases, not to write the store: the write fails half-way
    refused(96 * 1024, "could not write the secret store")
    assert "the disk is full" in project.outputs[-1] and "unchanged" in project.outputs[-1]
    # no room at all: not even the tenant database opens
    refused(0, "database or disk is full")

    project.secret("acme", "erp", "token", "acme-erp-value")  # space returns: it works
    assert b"acme-erp-value" in path.read_bytes() and BIG.encode() in path.read_bytes()


def _fill_mid_run(project: Project, disk: Disk, apis, *args: str):
    """A 50-record run (5 pages) stopped inside page 2's push; the disk fills; it goes on."""
    setup_gated(project, apis, "acme", 50, gate=project.gate("g", "push", 2))
    runtime = project.start(*args)
    wait_for(lambda: project.reached("g"), 60, "page 2's push")
    disk.fill()
    project.release("g")
    return runtime


def _everything_arrived(project: Project, apis, finish) -> None:
    """Every record arrives. The run resumes from its checkpoint and completes; or, when
    its failure could be recorded while the disk was full, it is ``Failed`` with the
    disk-full error and a next run carries on from the checkpoint (re-sending at most the
    one page whose checkpoint failed, under that run's page keys)."""
    [run] = project.runs()
    again = run["status"] == "Failed"
    if again:
        assert "database or disk is full" in (run["error"] or ""), run
        project.put(job("acme", "gated", "2020-01-02T00:00:00Z"))
        finish()
    last = project.runs()[0]
    assert last["status"] == "Completed", last
    stats = apis.stats("acme")
    assert stats["count"] == 50, stats
    assert stats["maxReceives"] == (2 if again else 1), stats  # once, within a run


@pytest.mark.timeout(120)
def test_a_runtime_on_a_full_disk_carries_on_once_space_returns(full_project, disk, apis):
    project = full_project
    runtime = _fill_mid_run(project, disk, apis)
    wait_for(lambda: "database or disk is full" in runtime.stderr(), 30, "the disk-full error")
    assert not runtime.exited()
    disk.free()

    def settled() -> None:
        wait_for(
            lambda: project.runs()[0]["status"] in ("Completed", "Failed"), 60, "the run to end"
        )

    settled()
    _everything_arrived(project, apis, settled)


@pytest.mark.timeout(150)
def test_a_run_stopped_by_a_full_disk_resumes_from_its_checkpoint(full_project, disk, apis):
    project = full_project
    runtime = _fill_mid_run(project, disk, apis, "--once")
    wait_for(lambda: "database or disk is full" in runtime.stderr(), 30, "the disk-full error")
    if not runtime.exited():
        runtime.kill()  # (until run --once gives up by itself: see the next test)
    disk.free()
    project.run_once(expect=None)
    _everything_arrived(project, apis, lambda: project.run_once(expect=None))


@pytest.mark.timeout(90)
def test_run_once_on_a_full_disk_fails_with_a_clear_error_not_an_endless_loop(
    full_project, disk, apis
):
    project = full_project
    runtime = _fill_mid_run(project, disk, apis, "--once")
    code = runtime.wait(25)
    log = runtime.stderr()
    assert code == 1, code
    assert "database or disk is full" in log and "free space" in log
    assert log.count("Traceback") <= 3, log.count("Traceback")
    disk.free()
    project.run_once(expect=None)
    _everything_arrived(project, apis, lambda: project.run_once(expect=None))
