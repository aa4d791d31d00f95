"""The experiment scripts that tests import share one process (pytest workers import them all):
absl must not see a flag defined twice (experiments/script_flags.py holds the shared ones)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_imported_scripts_define_no_flag_twice():
    code = "import experiments.fig7_ablations, experiments.metagenrl_table2; print('imported')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported" in proc.stdout
