"""Meta-train an update rule (LPG) from a config file; resumable, checkpointed, logged.

    python -m launch.train --config experiments/configs/lpg.py:cpu --workdir runs/cpu \
        [--config.meta.steps=50] [--evaluate]

Restarting with the same --workdir resumes from the latest checkpoint (bit-identical on CPU).
SIGTERM/SIGINT save a checkpoint and exit cleanly. Writes <workdir>/metrics.csv, TensorBoard
events under <workdir>/tensorboard and <workdir>/config.json. `--evaluate` runs
launch/evaluate.py on the final checkpoint afterwards.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from launch import train_loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/lpg.py:cpu", "Experiment config file (with :preset).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
_EVALUATE = flags.DEFINE_bool("evaluate", False, "Evaluate the final rule after training.")
_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache", os.path.expanduser("~/.cache/lpg/jax_compilation_cache"),
    "Persistent XLA compilation cache directory ('' disables).")

def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    train_loop.enable_compilation_cache(_CACHE_DIR.value)
    ckpt_dir = train_loop.train(_CONFIG.value, _WORKDIR.value)
    if _EVALUATE.value:
        from launch import eval_report  # pylint: disable=g-import-not-at-top

        eval_report.evaluate_checkpoint(ckpt_dir, _CONFIG.value, _WORKDIR.value)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
