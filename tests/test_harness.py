"""The suite's own harness: a CLI run that hangs fails its test with what it was doing.

A CI run once hung twice in ``verify`` (600 s each, pytest-timeout's limit) and said only where the test
waited. ``conftest.hung`` now reports every thread's native and Python stack of the command and of what it
started (py-spy, in the test extra), then kills them; these tests check that it does, here and on CI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import hung

SLEEPER = ("import subprocess, sys, time\n"
           "child = subprocess.Popen([sys.executable, '-c', 'import time; print(1, flush=True); time.sleep(120)'],\n"
           "                         stdout=subprocess.PIPE)\n"
           "child.stdout.readline()\n"  # the process it started is running its code
           "print('started', flush=True); time.sleep(120)\n")  # one line: py-spy finds it there either way


@pytest.mark.skipif(shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None and shutil.which("py-spy") is None,
                    reason="py-spy is not installed (the test extra has it)")
def test_a_hung_command_is_reported_with_its_stacks_and_its_children_and_killed() -> None:
    process = subprocess.Popen([sys.executable, "-c", SLEEPER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    with process:
        assert process.stdout is not None and process.stdout.readline() == "started\n"
        report = hung(process, 3)
    assert report.startswith(f"{sys.executable} -c") and "ran past 3 s" in report
    assert report.count("--- pid ") == 2, report  # the command and the process it started
    assert "<module> (<string>:5)" in report and "<module> (<string>:1)" in report, report  # each one's Python frame
    assert "--- its stdout:" in report and "--- its stderr:" in report
    assert process.returncode == -9
