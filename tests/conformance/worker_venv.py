"""The Python 3.13 venv the conformance suite runs the real worker library in.

``/work/main/.venv-worker`` (``<project>/.venv-worker``) holds ``azure-functions-runtime``
(``requirements-worker.txt``) plus the app's own ``requirements.txt``, as the host's
Python 3.13 image would. It is rebuilt when either file or the interpreter changes (a
stamp file keeps their hash). The interpreter is ``DATASYNC_WORKER_PYTHON``, else
``python3.13`` on ``PATH``, else ``/root/.pyenv/versions/3.13*/bin/python``.

``python -m tests.conformance.worker_venv`` builds it ahead of a test run.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["ROOT", "VENV", "WorkerVenvError", "ensure_worker_venv", "find_python"]

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-worker"
WORKER_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-worker.txt"
APP_REQUIREMENTS = ROOT / "requirements.txt"
STAMP = ".conformance-stamp"


class WorkerVenvError(RuntimeError):
    """No usable Python 3.13, or the venv could not be built (the message says which)."""


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        major, minor = out.split()
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def find_python() -> str:
    """A Python 3.13 interpreter, or :class:`WorkerVenvError` naming where it looked."""
    tried: list[str] = []
    env = os.environ.get("DATASYNC_WORKER_PYTHON")
    candidates = [env] if env else []
    candidates += [p for p in [shutil.which("python3.13")] if p]
    candidates += sorted(glob.glob("/root/.pyenv/versions/3.13*/bin/python"), reverse=True)
    for python in candidates:
        tried.append(python)
        if _version(python) == (3, 13):
            return python
        if env and python == env:
            raise WorkerVenvError(
                f"DATASYNC_WORKER_PYTHON={env} is not a Python 3.13 "
                "interpreter (the worker library azure-functions-runtime "
                "needs 3.13)"
            )
    raise WorkerVenvError(
        "no Python 3.13 found for the conformance suite (the real worker library "
        "azure-functions-runtime needs 3.13): set DATASYNC_WORKER_PYTHON, put python3.13 "
        "on PATH, or install one under /root/.pyenv/versions/3.13*"
        + (f"; tried {', '.join(tried)}" if tried else "")
    )


def _fingerprint(python: str) -> str:
    digest = hashlib.sha256()
    for path in (WORKER_REQUIREMENTS, APP_REQUIREMENTS):
        digest.update(path.read_bytes())
    digest.update(os.path.realpath(python).encode())
    return digest.hexdigest()


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise WorkerVenvError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def ensure_worker_venv() -> Path:
    """The venv's python, built or rebuilt first when needed (safe across processes)."""
    python = find_python()
    fingerprint = _fingerprint(python)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    lock_name = "datasync-venv-worker-" + hashlib.sha256(str(VENV).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / (lock_name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = VENV / STAMP
        venv_python = VENV / "bin" / "python"
        if stamp.exists() and stamp.read_text() == fingerprint and venv_python.exists():
            return venv_python
        if VENV.exists():
            shutil.rmtree(VENV)
        _run([python, "-m", "venv", str(VENV)], "creating the worker venv")
        _run(
            [
                str(venv_python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(WORKER_REQUIREMENTS),
                "-r",
                str(APP_REQUIREMENTS),
            ],
            "installing azure-functions-runtime and requirements.txt into the worker venv",
        )
        stamp.write_text(fingerprint)
        return venv_python


if __name__ == "__main__":
    try:
        print(ensure_worker_venv())
    except WorkerVenvError as exc:
        sys.exit(str(exc))
