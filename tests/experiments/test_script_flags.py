"""Every module with absl flags that the tests import shares one process (each pytest worker
collects every test module): absl refuses a flag defined twice, so their flag names must be
disjoint (experiments/script_flags.py holds the ones scripts share)."""

import glob
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def flag_modules_imported_by_tests() -> list[str]:
    """launch/ and experiments/ modules that define absl flags and that some test imports."""
    tests = "\n".join(open(p).read() for p in glob.glob(os.path.join(REPO, "tests", "**", "*.py"), recursive=True))
    found = []
    for path in sorted(glob.glob(os.path.join(REPO, "launch", "*.py")) +
                       glob.glob(os.path.join(REPO, "experiments", "*.py"))):
        package, name = os.path.basename(os.path.dirname(path)), os.path.basename(path)[:-3]
        if "DEFINE_" not in open(path).read():
            continue
        if re.search(rf"from {package} import {name}\b|import {package}\.{name}\b", tests):
            found.append(f"{package}.{name}")
    return found


def test_imported_scripts_define_no_flag_twice():
    modules = flag_modules_imported_by_tests()
    assert {"experiments.fig7_ablations", "experiments.metagenrl_table2", "launch.benchmark"} <= set(modules)
    code = f"import {', '.join(modules)}; print('imported')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported" in proc.stdout
