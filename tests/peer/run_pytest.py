"""Run a pytest-based peer suite module (``cachelib_suite.py``, ``dogpile_suite.py``) in this
process; JSON on stdout.

``python tests/peer/run_pytest.py MODULE SUITE_DIR URL MODE`` (SUITE_DIR: the fetched sdist
files, or ``-`` when the suite ships in the package, as dogpile's does)
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

module, suite_dir, url, mode = sys.argv[1:5]
here = Path(__file__).resolve().parent
sys.path[:0] = [str(Path(suite_dir) / "tests"), str(here.parents[1])] if suite_dir != "-" else [
    str(here.parents[1])]
# cachelib's conftest starts servers through pytest-xprocess; none is needed here
sys.modules["xprocess"] = types.SimpleNamespace(ProcessStarter=object)  # type: ignore[assignment]
os.environ.update(PEER_URL=url, PEER_MODE=mode)


class Report:
    def __init__(self) -> None:
        self.run = 0
        self.failures: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" and report.passed:
            self.run += 1
        elif report.failed:
            self.run += report.when == "call"
            self.failures.append((report.nodeid, str(report.longrepr)[-3000:]))
        elif report.skipped:
            self.skipped.append((report.nodeid.split("::")[-1], str(report.longrepr[-1])))


def run(targets: list[str], report: Report) -> int:
    return int(pytest.main([*targets, "-q", "-p", "no:cacheprovider",
                            "-c", str(here / "pytest-peer.ini"), "--rootdir", str(here),
                            "-W", "ignore::DeprecationWarning"], plugins=[report]))


report = Report()
code = run([str(here / module)], report)
rerun: list[str] = []
if mode == "restart" and report.failures:
    # a test that straddled a kill or restart of the server is run once more (see README)
    rerun = [nodeid for nodeid, _ in report.failures]
    again = Report()
    code = run([str(here / nodeid) for nodeid in rerun], again)
    report.failures = again.failures
print(json.dumps({"run": report.run, "failures": report.failures, "errors": [],
                  "skipped": report.skipped, "rerun": rerun, "exit": code}))
