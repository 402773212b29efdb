"""The Makefile itself: what make reads before it runs anything."""

from __future__ import annotations

import subprocess

from topology import ROOT


def test_no_variable_is_used_before_the_makefile_defines_it():
    """A prerequisite list is expanded as make reads it: a variable defined
    further down is still empty there, and the target then asks for a file
    such as /stamps/linear that no rule makes. -q runs no recipe."""
    done = subprocess.run(["make", "--warn-undefined-variables", "-qp", "no-such-target"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    undefined = [line for line in done.stderr.splitlines() if "undefined variable" in line]
    assert undefined == [], "\n".join(undefined)
