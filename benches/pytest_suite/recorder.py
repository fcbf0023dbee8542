"""pytest plugin (``-p recorder``): write each test's setup/call/teardown
durations, and the session fixture's setup time, to $BENCH_REPORT as JSON."""

from __future__ import annotations

import json
import os
from typing import Dict

#: Seconds the heavy session fixture took to set up (set by conftest.py).
SESSION_SETUP_S = 0.0

_tests: Dict[str, Dict[str, float]] = {}


def pytest_runtest_logreport(report) -> None:  # type: ignore[no-untyped-def]
    d = _tests.setdefault(report.nodeid, {"setup": 0.0, "call": 0.0, "teardown": 0.0})
    d[report.when] = report.duration
    if report.failed:
        d["failed"] = 1.0


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    path = os.environ.get("BENCH_REPORT")
    if not path:
        return
    tests = [dict(v, nodeid=k) for k, v in _tests.items()]
    with open(path, "w") as f:
        json.dump({"tests": tests, "session_setup_s": SESSION_SETUP_S, "exitstatus": int(exitstatus)}, f, indent=1)
