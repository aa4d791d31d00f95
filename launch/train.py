"""Meta-train an update rule (LPG) from a config file; resumable, checkpointed, logged.

    python -m launch.train --config experiments/configs/lpg.py:cpu --workdir runs/cpu \
        [--config.meta.steps=50] [--evaluate]

Restarting with the same --workdir resumes from the latest checkpoint (bit-identical on CPU).
Every file of a checkpoint is checked against the step's SHA-256 manifest first: a damaged latest
step stops the run before any work, naming the earlier intact steps; `--restore_step=N` then
resumes from step N explicitly (the damaged later steps are moved aside, never deleted).
SIGTERM/SIGINT save a checkpoint and exit cleanly. Writes <workdir>/metrics.csv, TensorBoard
events under <workdir>/tensorboard and <workdir>/config.json. `--evaluate` runs
launch/evaluate.py on the final checkpoint afterwards.

Devices. The population's lifetimes are sharded over every device the program sees (a 1-D mesh,
lpg/meta/sharding.py); each task's lifetimes must divide evenly by the device count.
  * one host (CPU, or a local GPU): just run it.
  * many hosts (TPU pod slice, GPU cluster): run the *same* command on every host with
    `--multihost`; `jax.distributed.initialize()` finds the coordinator from the TPU / SLURM /
    GKE environment, or from `--coordinator_address --num_processes --process_id` (e.g. several
    local CPU processes). The workdir must be on storage every host sees; only process 0 logs.
    Recipes: launch/tpu_pod.sh, launch/local_gpu.sh, BUILD_NOTES.md.
  * debugging: `--config.debug` shrinks every shape (a meta-step compiles in seconds) and
    turns on jax_debug_nans (the op that made a NaN is re-run op by op and named). Adding the
    environment variable JAX_DISABLE_JIT=1 runs everything op by op, so breakpoints and prints
    work inside the meta-step (minutes per meta-step even at debug shapes).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

# No jax computation (and no import of envs/ or lpg/, which start the backend) before main():
# jax.distributed.initialize() must run before the backend exists.

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/lpg.py:cpu", "Experiment config file (with :preset).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
_EVALUATE = flags.DEFINE_bool("evaluate", False, "Evaluate the final rule after training.")
_RESTORE_STEP = flags.DEFINE_integer(
    "restore_step", None,
    "Resume from this intact checkpoint step instead of the latest (allowed when every later "
    "step is damaged; those are moved aside to <workdir>/checkpoints/corrupt-<step>-<time>).")
_ALLOW_UNVERIFIED = flags.DEFINE_bool(
    "allow_unverified_checkpoint", False,
    "Resume from a checkpoint that has no SHA-256 manifest (saved before manifests existed); "
    "files that differ from a manifest are never accepted.")
_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache", os.path.expanduser("~/.cache/lpg/jax_compilation_cache"),
    "Persistent XLA compilation cache directory, and compiled executables under "
    "<dir>/executables (launch/executables.py); '' disables both.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first (every host runs this command).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (default: auto-detected on TPU/SLURM/GKE).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Total processes (default: auto-detected).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (default: auto-detected).")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", -1,
    "CPU only: split the host into this many XLA devices, each running a shard of the population "
    "on its own core (measured +28% for the CPU default on 2 cores, BUILD_NOTES.md). -1: the "
    "largest divisor of config.meta.lifetimes_per_task not above the core count; 0: XLA's default "
    "(one CPU device). Ignored with --multihost or when XLA_FLAGS already sets a device count.")
_CPU_COLLECTIVES = flags.DEFINE_enum(
    "cpu_collectives", "gloo", ["gloo", "mpi", "none"],
    "Cross-process collectives for CPU devices (multi-process CPU runs need gloo or mpi).")


def lifetimes_per_task(config) -> int:
    """How many lifetimes (agents, ES candidates) of each task the config's population holds."""
    if config.get("method") == "metagenrl":  # meta.num_agents in total, split over meta.tasks
        tasks = [name for name in str(config.meta.tasks).split(",") if name.strip()]
        return int(config.meta.num_agents) // max(1, len(tasks))
    if config.meta.get("estimator") == "es":
        return int(config.meta.es.population)
    return int(config.meta.lifetimes_per_task)


def split_cpu_into_devices(lifetimes_per_task: int) -> int:
    """Sets XLA_FLAGS so the CPU backend has several devices (before JAX starts); returns how many
    (0: left alone). Other backends are unaffected: the mesh uses the default backend's devices."""
    flag = "--xla_force_host_platform_device_count"
    if _MULTIHOST.value or flag in os.environ.get("XLA_FLAGS", "") or _CPU_DEVICES.value == 0:
        return 0
    count = _CPU_DEVICES.value
    if count < 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        count = max(d for d in range(1, max(cores, 1) + 1) if lifetimes_per_task % d == 0)
    if count > 1:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}={count}".strip()
    return count


def initialize_distributed() -> None:
    """jax.distributed.initialize from the flags (explicit values, else auto-detection)."""
    import jax  # pylint: disable=g-import-not-at-top

    if _CPU_COLLECTIVES.value != "none":
        jax.config.update("jax_cpu_collectives_implementation", _CPU_COLLECTIVES.value)
    explicit = {name: value for name, value in (
        ("coordinator_address", _COORDINATOR.value), ("num_processes", _NUM_PROCESSES.value),
        ("process_id", _PROCESS_ID.value)) if value is not None}
    if explicit and len(explicit) != 3:
        raise app.UsageError(
            "--coordinator_address, --num_processes and --process_id go together (or give none "
            f"of them to auto-detect); got only {sorted(explicit)}")
    if "num_processes" in explicit and not 0 <= explicit["process_id"] < explicit["num_processes"]:
        raise app.UsageError(f"--process_id={explicit['process_id']} must be in "
                             f"[0, --num_processes={explicit['num_processes']})")
    jax.distributed.initialize(**explicit)
    logging.warning("jax.distributed: process %d of %d, %d local / %d global devices",
                    jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    if not _MULTIHOST.value and any(f.value is not None for f in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID)):
        raise app.UsageError("--coordinator_address/--num_processes/--process_id need --multihost")
    if _RESTORE_STEP.value is not None and _RESTORE_STEP.value < 0:
        raise app.UsageError(f"--restore_step must be a checkpoint step >= 0, got {_RESTORE_STEP.value}")
    if _CPU_DEVICES.value < -1:
        raise app.UsageError(f"--cpu_devices must be -1 (auto), 0 (off) or positive, got {_CPU_DEVICES.value}")
    config = _CONFIG.value
    split_cpu_into_devices(lifetimes_per_task(config))
    if _MULTIHOST.value:
        initialize_distributed()
    import jax  # pylint: disable=g-import-not-at-top
    from launch import train_loop  # pylint: disable=g-import-not-at-top

    executable_cache = ""
    if config.get("debug", False):
        config = train_loop.debug_config(config, jax.device_count())
        jax.config.update("jax_debug_nans", True)
        logging.warning("debug mode: tiny shapes, NaN checks on (JAX_DISABLE_JIT=1 for op-by-op)")
    elif _CACHE_DIR.value:
        train_loop.enable_compilation_cache(_CACHE_DIR.value)
        executable_cache = os.path.join(_CACHE_DIR.value, "executables")
    train_loop.train(config, _WORKDIR.value, executable_cache=executable_cache,
                     restore_step=_RESTORE_STEP.value,
                     allow_unverified_checkpoint=_ALLOW_UNVERIFIED.value)
    if _EVALUATE.value and jax.process_index() == 0:
        from launch import eval_report  # pylint: disable=g-import-not-at-top

        eval_report.evaluate_trained_rule(os.path.join(_WORKDIR.value, "rule"), config, _WORKDIR.value)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
