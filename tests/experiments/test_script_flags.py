"""Every module with absl flags that the tests import shares one process (each pytest worker
collects every test module): absl refuses a flag defined twice, so their flag names must be
disjoint (experiments/script_flags.py holds the ones scripts share)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The flag-defining modules the tests import (grep the tests for launch./experiments. imports).
IMPORTED_BY_TESTS = ("experiments.fig7_ablations", "experiments.metagenrl_table2", "launch.benchmark",
                     "launch.compare_runs")


def test_imported_scripts_define_no_flag_twice():
    code = f"import {', '.join(IMPORTED_BY_TESTS)}; print('imported')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported" in proc.stdout
