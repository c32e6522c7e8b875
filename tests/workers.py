"""Real worker processes for multi-process tests (see ``mp_worker.py`` for the protocol)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

WORKER = str(Path(__file__).resolve().parent / "mp_worker.py")


class WorkerError(AssertionError):
    """A worker answered with an error, died, or did not answer in time."""


class Worker:
    """One process with one service (``mode``: sync, asyncio or uvloop) under our control."""

    def __init__(self, url: str, prefix: str, mode: str = "sync", **options: Any) -> None:
        spec = {"url": url, "prefix": prefix, "mode": mode, "options": options}
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, json.dumps(spec)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))

    def call(self, op: str, *args: Any, timeout: float = 20.0) -> Any:
        """Run ``op(*args)`` in the worker and return its result."""
        self.send(op, *args)
        return self.receive(op, timeout)

    def send(self, op: str, *args: Any) -> None:
        """Start ``op(*args)`` in the worker; ``receive`` gets its result."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, "args": list(args)}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"worker died: {self.stderr()}") from None

    def receive(self, op: str = "call", timeout: float = 20.0) -> Any:
        """The result of the op sent last."""
        assert self.proc.stdout is not None
        poller = select.poll()  # not select(): the suite may hold more than 1024 descriptors
        poller.register(self.proc.stdout, select.POLLIN)
        if not poller.poll(timeout * 1000):
            raise WorkerError(f"worker did not answer {op} within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"worker died during {op}: {self.stderr()}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{op} raised {reply['error']}")
        return reply["ok"]

    def stderr(self) -> str:
        """What the worker wrote to stderr (once it has exited)."""
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()[-3000:]

    def exit(self) -> None:
        """Ask the worker to exit, and wait for it."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write('{"op": "exit"}\n')
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=20)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def close(self) -> None:
        """Make sure the process is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
