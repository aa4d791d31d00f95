"""The meta-training host loop: resume, jitted meta-steps, metrics, checkpoints, signals.

No flags here (launch/train.py parses them), so tests and other scripts can call `train`.

Resuming never trusts a damaged checkpoint (launch/checkpoints.py verifies every file against the
step's manifest): if the latest step is corrupt or unverifiable, `train` refuses before it trains,
writes or deletes anything, naming the earlier intact steps. Resuming from one of them is explicit
(`restore_step`); the damaged later steps are then moved aside to
<workdir>/checkpoints/{corrupt,unverified}-<step>-<time> (never deleted, and out of reach of
orbax's max_to_keep clean-up) so the resumed run can save those step numbers again. An intact
later step is never trained over (refused). As in any run, keep_checkpoints then rotates out the
oldest intact steps once newer ones are saved.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time

from absl import logging
import jax
import tqdm

from launch import build
from launch import checkpoints
from launch import executables
from launch import metrics as metrics_lib
from lpg.meta import sharding

# Settings that may differ on resume (they do not change what a meta-step computes).
RESUMABLE_CHANGES = ("meta.steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval.")


def enable_compilation_cache(path: str) -> None:
    """Turns on JAX's persistent XLA compilation cache at `path` ('' leaves it off)."""
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def debug_config(config, num_devices: int):
    """`--config.debug`: the same config with every shape tiny (one lifetime per device per task),
    so a meta-step compiles and runs in seconds (and op by op under JAX_DISABLE_JIT=1 in minutes).
    Returns a copy."""
    config = config.copy_and_resolve_references()
    config.rule.hidden_size = 8
    config.rule.y_dim = 4
    config.meta.lifetimes_per_task = num_devices
    if "es" in config.meta:
        config.meta.es.population = 2 * num_devices  # one antithetic pair per device
    config.meta.num_envs = 2
    config.meta.unroll_length = 4
    config.meta.num_updates = 2
    config.meta.lifetimes_per_chunk = 0
    config.meta.steps = min(int(config.meta.steps), 3)
    config.log_every = 1
    config.checkpoint_every = 2
    config.eval.seeds = 2
    config.eval.env_steps = 1_000
    config.eval.num_envs = 2
    return config


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_resume_compatible(saved: dict, current: dict) -> None:
    """Refuses to resume a run whose saved config differs in anything that shapes the run."""
    saved_flat, current_flat = _flatten(saved), _flatten(current)
    diffs = [
        f"{k}: saved {saved_flat.get(k)!r} != now {current_flat.get(k)!r}"
        for k in sorted(set(saved_flat) | set(current_flat))
        if saved_flat.get(k) != current_flat.get(k) and not k.startswith(RESUMABLE_CHANGES)
    ]
    if diffs:
        raise ValueError("the workdir holds a run with a different config; use a new --workdir or "
                         "the same config. Differences: " + "; ".join(diffs))


class _StopRequested:
    """Turns SIGTERM/SIGINT into a flag checked between meta-steps."""

    def __init__(self):
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        del frame
        logging.warning("signal %d: checkpointing and stopping after this meta-step", signum)
        self.requested = True


def _resume_hint(ckpt: checkpoints.Checkpointer, step: int) -> str:
    """What to do about damaged step `step` (appended to the refusal)."""
    intact = [s for s in ckpt.intact_steps() if s < step]
    if not intact:
        return " Nothing was trained, written or deleted; no earlier step is intact: use a new --workdir."
    return (f" Nothing was trained, written or deleted. Resume from an intact step explicitly with "
            f"--restore_step={intact[-1]} (train(restore_step=...)): the damaged later steps are then "
            f"moved aside within {ckpt.directory} (as corrupt-<step>-<time> or unverified-<step>-<time>), "
            f"never deleted.")


def choose_restore_step(ckpt: checkpoints.Checkpointer, restore_step: int | None) -> int | None:
    """The checkpoint step to resume from (None: a fresh run), after verifying its files.

    restore_step: None resumes from the latest step; N resumes from step N, which is only allowed
    when every later step is damaged (they are moved aside by `set_aside_later_steps`): an intact
    later step is refused rather than trained over. Raises CheckpointError, before anything is
    written, when the chosen step is corrupt or (unless ckpt.allow_unverified) has no manifest.
    """
    steps = ckpt.all_steps()
    if restore_step is None and not steps:
        return None
    step = steps[-1] if restore_step is None else int(restore_step)
    if step not in steps:
        raise checkpoints.CheckpointError(
            f"restore_step={step}: no checkpoint {step} in {ckpt.directory}; available steps: "
            f"{steps}, intact: {ckpt.intact_steps()}")
    try:
        ckpt.verify(step)
    except checkpoints.UnverifiedCheckpointError as err:
        raise checkpoints.UnverifiedCheckpointError(
            f"{err}. To trust it anyway pass --allow_unverified_checkpoint "
            f"(train(allow_unverified_checkpoint=True)).{_resume_hint(ckpt, step)}") from None
    except checkpoints.CheckpointError as err:
        raise checkpoints.CheckpointError(f"{err}.{_resume_hint(ckpt, step)}") from None
    intact_later = [s for s in steps if s > step and ckpt.is_intact(s)]
    if intact_later:
        raise checkpoints.CheckpointError(
            f"restore_step={step}, but the later step(s) {intact_later} in {ckpt.directory} are "
            f"intact and resuming from {step} would train over their step numbers; resume from "
            f"step {intact_later[-1]}, or move the later steps out of the directory yourself")
    return step


def set_aside_later_steps(ckpt: checkpoints.Checkpointer, step: int) -> None:
    """Moves every (damaged, see `choose_restore_step`) step after `step` out of orbax's view, so
    the resumed run saves those step numbers afresh and max_to_keep never counts or deletes them."""
    for later in [s for s in ckpt.all_steps() if s > step]:
        try:
            ckpt.problems(later)
            reason = "corrupt"
        except checkpoints.UnverifiedCheckpointError:
            reason = "unverified"
        logging.warning("resuming from step %d: moving the %s later step %d aside", step, reason, later)
        ckpt.set_aside(later, reason)


def prepare(trainer, key, program_config: dict, mesh, executable_cache: str = "", restore=None):
    """(initial state, meta-step function, whether the step was loaded from the cache).

    The meta-step compiles (or loads, launch/executables.py) on a second thread while this one
    restores (`restore()`) or builds the initial state: XLA releases the GIL, so start-up costs
    max(step, init) rather than the sum. Under JAX_DISABLE_JIT=1 nothing compiles (op-by-op debugging).
    """
    if jax.config.jax_disable_jit:
        return (restore() if restore else trainer.init(key)), trainer.step, False
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        step_future = pool.submit(
            executables.load_or_compile, executable_cache, "step", program_config, mesh,
            trainer.compiled_step)
        if restore is not None:
            state = restore()  # onto this mesh, whatever mesh or process count wrote it
        else:
            init_fn, _ = executables.load_or_compile(
                executable_cache, "init", program_config, mesh,
                lambda: trainer.jit_init().lower(key).compile())
            state = init_fn(key)
        # Sharded over the mesh, the incoming state donated, compiled once up front.
        step_fn, loaded = step_future.result()
    return state, step_fn, loaded


def program_config(config_json: dict) -> dict:
    """What the compiled programs depend on: the config minus settings that may change on resume."""
    return {k: v for k, v in _flatten(config_json).items() if not k.startswith(RESUMABLE_CHANGES)}


def train(config, workdir: str, mesh=None, executable_cache: str = "",
          restore_step: int | None = None, allow_unverified_checkpoint: bool = False) -> str:
    """Runs (or resumes) meta-training; returns the checkpoint directory.

    mesh: the population mesh; default all devices of all processes (sharding.population_mesh()).
    With several processes (jax.distributed) every process runs this same function.
    executable_cache: directory of compiled executables (launch/executables.py); '' disables.
    restore_step: resume from this checkpoint step instead of the latest; later (damaged) steps
      are moved aside (module docstring). None: the latest step, refused if it is damaged.
    allow_unverified_checkpoint: accept a step that has no manifest (one saved before manifests
      existed); a step whose files differ from its manifest is never accepted.
    """
    mesh = sharding.population_mesh() if mesh is None else mesh
    trainer = build.make_trainer(config, mesh)  # validates every value before any work
    config_json = checkpoints.config_to_json(config)
    os.makedirs(workdir, exist_ok=True)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    ckpt = checkpoints.Checkpointer(ckpt_dir, max_to_keep=int(config.keep_checkpoints),
                                    allow_unverified=allow_unverified_checkpoint)

    key = jax.random.key(int(config.seed))
    try:
        resume_from = choose_restore_step(ckpt, restore_step)
        resuming = resume_from is not None
        if resuming:
            check_resume_compatible(ckpt.restore_config(resume_from), config_json)
            if restore_step is not None:
                set_aside_later_steps(ckpt, resume_from)
    except BaseException:
        ckpt.close()
        raise
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config_json, f, indent=2)

    compile_start = time.perf_counter()
    state, step_fn, step_loaded = prepare(
        trainer, key, program_config(config_json), mesh, executable_cache,
        restore=(lambda: ckpt.restore(trainer.abstract_state(), resume_from)[0]) if resuming else None)
    if resuming:
        logging.info("resumed from step %d", int(state.step))
    if jax.process_index() == 0:
        tqdm.tqdm.write(f"initial state and meta-step ready in {time.perf_counter() - compile_start:.1f}s "
                        f"({'loaded from ' + executable_cache if step_loaded else 'compiled'})")
    writer = metrics_lib.MetricsWriter(workdir)
    stop = _StopRequested()
    env_steps_per_meta_step = sum(
        spec.num_lifetimes * trainer.steps_per_meta_step(spec) for spec in trainer.groups)
    start_step = int(state.step)
    total_steps = int(config.meta.steps)
    pending = []
    bar = tqdm.tqdm(total=total_steps, initial=start_step, desc="meta-train", unit="step",
                    disable=jax.process_index() != 0)
    window_start = time.perf_counter()
    window_steps = 0
    step = start_step
    try:
        while step < total_steps and not stop.requested:
            state, metrics = step_fn(state)
            step += 1
            window_steps += 1
            if step == start_step + 1:
                jax.block_until_ready(state)
                if jax.process_index() == 0:
                    tqdm.tqdm.write(
                        f"first meta-step (compile + run): {time.perf_counter() - compile_start:.1f}s "
                        f"on {mesh.size} device(s), {jax.process_count()} process(es)")
                window_start, window_steps = time.perf_counter(), 0
            pending.append((step, metrics))
            bar.update(1)
            if step % int(config.log_every) == 0 or step == total_steps:
                rows = jax.device_get(pending)
                pending = []
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                rate = window_steps / elapsed
                for row_step, row in rows:
                    row = dict(row)
                    row.update(meta_steps_per_s=rate, inner_env_steps_per_s=rate * env_steps_per_meta_step,
                               env_steps=row_step * env_steps_per_meta_step)
                    writer.write(row_step, row)
                returns = {k.rsplit("/", 2)[-2]: v for k, v in rows[-1][1].items() if k.endswith("/recent_return")}
                bar.set_postfix(
                    loss=f"{float(rows[-1][1]['meta_loss']):.3f}",
                    env_sps=f"{rate * env_steps_per_meta_step:,.0f}",
                    ret=" ".join(f"{k}={float(v):.2f}" for k, v in returns.items()))
                window_start, window_steps = time.perf_counter(), 0
            if step % int(config.checkpoint_every) == 0:
                ckpt.save(step, state, config_json, check_finite=state.meta_params)
        if ckpt.latest_step() != step:
            ckpt.save(step, state, config_json, check_finite=state.meta_params)
        if jax.process_index() == 0:
            checkpoints.save_rule(os.path.join(workdir, "rule"), trainer.rule, state.meta_params,
                                  {"workdir": os.path.abspath(workdir), "step": step})
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    return ckpt_dir
