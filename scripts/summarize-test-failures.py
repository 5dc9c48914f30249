#!/usr/bin/env python3
"""Prints every failed test found in the TRX reports under a directory: the test's name, its
error message, the first lines of its stack trace, and the milestones of the coordinator
processes it ran (started, paused, killed, downed, stopped: the lines of its output that say what
happened to a node, not every log line). test.sh calls it when a test run fails, so that the end of a
CI log says what failed and what the nodes went through. Usage: summarize-test-failures.py <results-dir>"""
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

TRX = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"
STACK_LINES = 8
MILESTONE_LINES = 16
LINE_WIDTH = 200
# The test lab's own marks ("===== node2", "--- node3 paused (SIGSTOP) at ...") and what a node says
# when the cluster changes its fate.
MILESTONE = re.compile(r"^(=====|---) (?!End of stack trace)|^error: |SBR took decision|has been downed|quarantined this node|Marking node\(s\) as UNREACHABLE")


def failures(report):
    root = ElementTree.parse(report).getroot()
    for result in root.iter(TRX + "UnitTestResult"):
        if result.get("outcome") != "Failed":
            continue
        message = result.findtext(f"{TRX}Output/{TRX}ErrorInfo/{TRX}Message") or ""
        stack = result.findtext(f"{TRX}Output/{TRX}ErrorInfo/{TRX}StackTrace") or ""
        output = result.findtext(f"{TRX}Output/{TRX}StdOut") or ""
        yield result.get("testName"), result.get("duration"), message.strip(), stack.strip(), milestones(output)


def milestones(output):
    """The last MILESTONE_LINES milestone lines of a test's output, each cut to LINE_WIDTH."""
    found = [line.strip()[:LINE_WIDTH] for line in output.splitlines() if MILESTONE.search(line.strip())]
    return found[-MILESTONE_LINES:]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: summarize-test-failures.py <results-dir>")
    reports = sorted(Path(sys.argv[1]).rglob("*.trx"))
    found = 0
    for report in reports:
        try:
            found_here = list(failures(report))
        except ElementTree.ParseError as error:
            print(f"test failures: {report.name} is not a readable TRX report ({error})")
            continue
        for name, duration, message, stack, marks in found_here:
            found += 1
            print(f"FAILED {name} [{duration}]")
            for line in message.splitlines():
                print(f"    {line}")
            for line in stack.splitlines()[:STACK_LINES]:
                print(f"    {line}")
            if marks:
                print("    what the nodes went through (from the test's output):")
                for line in marks:
                    print(f"      {line}")
    if found == 0:
        print("test failures: no report names a failed test, so a test host crashed or a project "
              "did not run; the log above says which")
    print(f"test failures: {found} failed test(s) in {len(reports)} report(s)")


if __name__ == "__main__":
    main()
