"""Flags that several experiment scripts share, defined once.

absl refuses a flag defined by two modules in one process, and the tests import several scripts
(experiments/fig7_ablations.py, experiments/metagenrl_table2.py) into one pytest worker; a flag
every script needs is therefore defined here and imported by each of them.
"""

from absl import flags

WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory of the script: its tables, figures and CSVs (and, for "
    "fig7_ablations, one <workdir>/<preset> run per preset).")
