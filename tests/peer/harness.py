"""Run a framework's own cache suite in a subprocess against a private redis-server, in one of
three modes: ``up``, ``down`` (a refused port from the start), ``restart`` (a background thread
kills the server and starts it again, twice, while the suite runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
MODES = ("up", "down", "restart")


@contextmanager
def outage(server: RedisServer, *, first: float = 2.0, down: float = 1.5,
           times: int = 2, started: Path | None = None) -> Iterator[list[str]]:
    """A thread that kills ``server`` and restarts it (empty) ``times`` times; yields its log.
    With ``started``, the first kill comes ``first`` seconds after that file appears (the
    suite's tests begin), not after the process starts."""
    stop = threading.Event()
    log: list[str] = []

    def chaos() -> None:
        while started is not None and not started.exists():
            if stop.wait(0.05):
                return
        if stop.wait(first):
            return
        for _ in range(times):
            server.kill()
            log.append(f"{time.monotonic():.1f} killed")
            stop.wait(down)
            server.restart(keep_data=False)
            log.append(f"{time.monotonic():.1f} restarted")
            if stop.wait(first):
                return

    thread = threading.Thread(target=chaos, name="peer-suite-chaos", daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        thread.join(30)
        if not server.is_running():
            server.start()


def run_suite(script: str, args: Sequence[str], url: str, mode: str,
              server: RedisServer | None, *, timeout: float = 240,
              first_kill: float | None = None) -> dict[str, Any]:
    """Run ``tests/peer/<script>`` with ``args + [url, mode]``; its JSON report (+ ``chaos``).
    ``first_kill``: in the restart mode, kill the server that long after the script says its
    tests begin (it creates the file named by ``$PEER_SUITE_STARTED``), not after it starts."""
    cmd = [sys.executable, str(ROOT / "tests" / "peer" / script), *args, url, mode]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    marker = None
    if first_kill is not None:
        marker = Path(tempfile.mkdtemp(prefix="peer-started-")) / "started"
        env["PEER_SUITE_STARTED"] = str(marker)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False, cwd=ROOT)

    if mode == "restart":
        assert server is not None
        timing = {} if first_kill is None else {"first": first_kill, "started": marker}
        with outage(server, **timing) as log:  # type: ignore[arg-type]
            proc = run()
    else:
        log, proc = [], run()
    lines = proc.stdout.strip().splitlines()
    assert lines, f"suite crashed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, f"suite crashed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    if marker is not None:
        shutil.rmtree(marker.parent, ignore_errors=True)
    report: dict[str, Any] = json.loads(lines[-1])
    report["chaos"] = log
    report["stderr"] = proc.stderr[-6000:]
    return report


def refused_url() -> str:
    """A loopback URL nobody listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


def summary(name: str, mode: str, report: dict[str, Any]) -> str:
    return (f"{name} [{mode}]: ran {report['run']}, skipped {len(report['skipped'])}, "
            f"failures {len(report['failures'])}, errors {len(report['errors'])}, "
            f"re-run after a kill/restart {report.get('rerun', [])}, chaos {report['chaos']}")
