"""The suite's own harness: a CLI run that hangs fails its test with what it was doing.

A CI run once hung twice in ``verify`` (600 s each, pytest-timeout's limit) and said only where the test
waited. ``conftest.hung`` now reports every thread's native and Python stack of the command and of what it
started (py-spy, installed by .ci/run), then kills them; these tests check that it does, here and on CI."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import hung

SLEEPER = ("import subprocess, sys, time\n"
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
           "print('started', flush=True)\n"
           "time.sleep(120)\n")


def test_a_hung_command_is_reported_with_its_stacks_and_its_children_and_killed() -> None:
    process = subprocess.Popen([sys.executable, "-c", SLEEPER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    with process:
        time.sleep(3)  # the child's child started
        report = hung(process, 3)
    assert report.startswith(f"{sys.executable} -c") and "ran past 3 s" in report
    assert report.count("--- pid ") == 2, report  # the command and the process it started
    assert report.count("time_sleep") == 2, report  # py-spy's native frame of time.sleep in each
    assert "--- its stdout:\nstarted" in report
    assert process.returncode == -9

