"""Throughput benchmarks, printed as one JSON object (a script, never a timed test).

    python -m launch.benchmark                       # everything
    python -m launch.benchmark --sections=envs --repeats=5

Sections:
  envs: environment steps/s under a uniformly random policy (valid actions only), vmapped over
        `--num_envs` (64) environments per family, and the tabular grid at 1024 envs.
  a2c:  A2C training env-steps/s on tabular/dense and random/dense (vmapped / chunked lifetimes).
  gymnax: the gymnax adapter (envs/wrappers/gymnax.py) against the raw gymnax env, alternating in
        one process (CartPole-v1, Breakout-MinAtar), and A2C training env-steps/s on both.
  brax: env-steps/s of the brax adapter (envs/wrappers/brax.py) per physics backend for hopper,
        halfcheetah, ant, reacher and inverted_pendulum at --brax_num_envs (128) envs ×
        --brax_steps random-action steps, against raw brax (its Episode+AutoReset wrappers),
        alternating in one process; also the adapter with auto_reset="initial", which prices the
        default fresh reset per step; then PPO training env-steps/s on --brax_ppo_tasks. Not in
        the default sections (long: MJX compiles and steps).
  es:   ES meta-training env-steps/s of LPG (LSTM-256; population 8 × whole 250-update lifetimes of
        64 envs × T = 20, forward only) on tabular/dense and on the 5 tabular grids, candidates on
        1 and 2 fake CPU devices (fresh process each). Not in the default sections.
  epg:  EPG's inner loop (8 ES candidates training fresh agents with the learned loss, forward
        only) per physics backend on brax/random_hopper (the paper's loss network) and on
        gymnax/random_pendulum (the cpu preset's). Not in the default sections.
  metagenrl: MetaGenRL meta-training (lpg/meta/metagenrl.py) of --metagenrl_agents (20, the
        paper's population) TD3 agents on each of --metagenrl_presets (experiments/configs/
        metagenrl.py: cpu, gymnax/Pendulum-v1; table2_cpu, two tasks, agents split evenly), one
        device, a fresh process each: meta-steps/s, env-steps/s, critic / policy / meta-gradient
        steps/s, compile time, train-state and replay-buffer size, XLA temp buffers and peak RSS.
        Not in the default sections.
  metatest: env-steps/s of training fresh agents with a frozen LPG (LSTM-256) vs A2C.
  meta: LPG meta-training at the paper architecture (LSTM-256, m=30, T=20, 64 envs, K=5,
        64 lifetimes, tabular/dense): inner env-steps/s, compile time, XLA buffer sizes, peak
        RSS, matmul FLOPs per meta-step (lpg/profiling.py) and their rate as a fraction of this
        machine's matmul peak, measured in the same run. --profile_dir adds a jax.profiler trace.
  compile: CPU default config (lpg.py:cpu) start-up as launch/train.py does it: cold, warm with
        JAX's persistent cache only, warm with the executable cache (fresh process each).
  memory: the meta section's step with K = 5 vs K = 20 (fresh process each).
  devices: the meta section's step sharded over 1, 2, 4 fake CPU devices (fresh process each).
  --baseline_ref=REF (with the meta section): the same meta-step measured side by side in another
        checkout of the code (a temporary `git worktree` of REF, e.g. the commit before a change),
        fresh processes alternating between the two trees, and the ratio of their medians.
Every figure is the median over `--repeats` timed runs after one compile run; compile times are
measured separately with `jit(...).lower(...).compile()`. Peak RSS is the process high-water mark
after each section. The machine is shared: compare variants within one run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

import envs
from envs import base as env_base
from lpg import profiling
from lpg import training
from lpg import types
from lpg.meta import population
from lpg.meta import sharding
from lpg.meta import trainer as trainer_lib
from lpg.rules import a2c
from lpg.rules import lpg as lpg_rule
from lpg.rules import ppo

_SECTIONS = flags.DEFINE_list(
    "sections", ["envs", "a2c", "metatest", "meta", "compile", "memory", "devices"],
    "Which benchmarks to run: any of envs, a2c, gymnax, brax, metatest, meta, es, epg, metagenrl, "
    "compile, memory, devices (gymnax, brax, es, epg and metagenrl are slow and not run by default).")
_REMAT = flags.DEFINE_enum("remat", "full", ["full", "dots", "none"], "Remat policy for the meta section.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", "", "Write a jax.profiler trace of 2 meta-steps here.")
_PROBE = flags.DEFINE_string("probe", "", "Internal: run one measurement (JSON spec) and print JSON.")
_HIDDEN = flags.DEFINE_integer("hidden", 256, "LSTM width for the meta/metatest sections.")
_K = flags.DEFINE_integer("K", 5, "Updates per meta-gradient for the meta section.")
_META_LIFETIMES = flags.DEFINE_integer("meta_lifetimes", 64, "Lifetimes for the meta section.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per figure (median reported).")
_NUM_ENVS = flags.DEFINE_integer("env_num_envs", 64, "Environments per family for the env benchmark.")
_BASELINE_REF = flags.DEFINE_string(
    "baseline_ref", "", "Git ref to compare the meta section against, side by side in this run.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating process pairs for --baseline_ref.")
_ENV_STEPS = flags.DEFINE_integer("env_steps_per_rollout", 200, "Steps per timed env rollout (env benchmark).")
_METAGENRL_AGENTS = flags.DEFINE_integer(
    "metagenrl_agents", 20, "Agents in total (split evenly over a preset's tasks) for the metagenrl section.")
_METAGENRL_PRESETS = flags.DEFINE_list(
    "metagenrl_presets", ["cpu", "table2_cpu"],
    "experiments/configs/metagenrl.py presets for the metagenrl section, one row each.")
_METAGENRL_STEPS = flags.DEFINE_integer(
    "metagenrl_steps", 50, "Meta-steps per timed call in the metagenrl section.")
_BRAX_ENVS = flags.DEFINE_list("brax_envs", ["hopper", "halfcheetah", "ant", "reacher", "inverted_pendulum"],
                               "brax envs for the brax section.")
_BRAX_BACKENDS = flags.DEFINE_list("brax_backends", ["mjx", "generalized", "positional", "spring"],
                                   "Physics backends for the brax section.")
_BRAX_NUM_ENVS = flags.DEFINE_integer("brax_num_envs", 128, "Environments per brax rollout.")
_BRAX_STEPS = flags.DEFINE_integer("brax_steps", 200, "Steps per timed brax rollout.")
_BRAX_PPO_TASKS = flags.DEFINE_list(
    "brax_ppo_tasks", ["brax/hopper-positional", "brax/inverted_pendulum-positional", "brax/inverted_pendulum"],
    "Tasks whose PPO training env-steps/s the brax section measures.")


def _peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM from /proc (reset by exec) where available:
    ru_maxrss survives fork+exec on Linux, so a probe process would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time_compiled(compiled, *args, repeats: int) -> float:
    """Median wall-clock seconds of `compiled(*args)` over `repeats` runs (after a warm-up)."""
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_random_rollout(env, num_envs: int, num_steps: int):
    """Returns rollout(key, params) -> total reward: `num_steps` random-policy steps on `num_envs`."""

    def rollout(key, params):
        reset_key, run_key = jax.random.split(key)
        _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_envs), params)
        mask = env_base.action_mask(env, params)
        # Uniform over valid actions with one integer draw per env (a Gumbel/categorical draw over
        # 18 logits per env would cost more than the environment step being measured).
        valid_actions = jnp.nonzero(mask, size=mask.shape[0])[0]
        num_valid = jnp.sum(mask)

        def one_step(carry, step_key):
            states, total = carry
            act_key, env_key = jax.random.split(step_key)
            actions = valid_actions[jax.random.randint(act_key, (num_envs,), 0, num_valid)]
            _, states, reward, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(env_key, num_envs), states, actions, params
            )
            return (states, total + reward.sum()), None

        (_, total), _ = jax.lax.scan(one_step, (states, 0.0), jax.random.split(run_key, num_steps))
        return total

    return rollout


def bench_env(task_name: str, num_envs: int, num_steps: int, repeats: int) -> dict:
    task = envs.make(task_name)
    params = task.sample_params(jax.random.key(0))
    fn = jax.jit(make_random_rollout(task.env, num_envs, num_steps))
    key = jax.random.key(1)
    start = time.perf_counter()
    compiled = fn.lower(key, params).compile()
    compile_s = time.perf_counter() - start
    seconds = _time_compiled(compiled, key, params, repeats=repeats)
    return {
        "num_envs": num_envs,
        "steps_per_s": num_envs * num_steps / seconds,
        "compile_s": compile_s,
    }


def bench_envs(repeats: int) -> dict:
    results = {}
    for name in ("tabular/dense", "random/dense", "chain/short", "chain/distractor"):
        results[name] = bench_env(name, _NUM_ENVS.value, _ENV_STEPS.value, repeats)
    results["tabular/dense@1024"] = bench_env("tabular/dense", 1024, _ENV_STEPS.value, repeats)
    results["peak_rss_mib"] = _peak_rss_mib()
    return results


def _a2c_hyper():
    return types.HyperParams(learning_rate=40.0, discount=0.99, entropy_cost=0.01,
                             value_cost=0.5, td_lambda=0.95)


def bench_agent_training(task_name, rule, meta_params, hyper, *, num_lifetimes, num_updates,
                         num_envs, repeats, lifetimes_per_chunk=None, unroll_length=20) -> dict:
    """Env-steps/s of `training.make_train_fn` (whole lifetimes' updates in one jit)."""
    task = envs.make(task_name)
    fn = training.make_train_fn(
        task, rule, num_lifetimes=num_lifetimes, num_updates=num_updates, num_envs=num_envs,
        unroll_length=unroll_length, lifetimes_per_chunk=lifetimes_per_chunk)
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = fn.lower(key, hyper, meta_params).compile()
    compile_s = time.perf_counter() - start
    seconds = _time_compiled(compiled, key, hyper, meta_params, repeats=repeats)
    return {"lifetimes": num_lifetimes, "num_envs": num_envs, "updates": num_updates,
            "unroll_length": unroll_length, "lifetimes_per_chunk": lifetimes_per_chunk,
            "env_steps_per_s": num_lifetimes * num_updates * num_envs * unroll_length / seconds,
            "compile_s": compile_s}


def bench_a2c(repeats: int) -> dict:
    hyper = _a2c_hyper()
    results = {
        "tabular/dense": bench_agent_training(
            "tabular/dense", a2c.A2C(), {}, hyper, num_lifetimes=8, num_updates=50, num_envs=64,
            repeats=repeats),
        "tabular/dense (lifetimes_per_chunk=1)": bench_agent_training(
            "tabular/dense", a2c.A2C(), {}, hyper, num_lifetimes=8, num_updates=50, num_envs=64,
            repeats=repeats, lifetimes_per_chunk=1),
        "random/dense": bench_agent_training(
            "random/dense", a2c.A2C(), {}, hyper.replace(learning_rate=1e-3), num_lifetimes=4,
            num_updates=10, num_envs=64, repeats=repeats),
        "random/dense (lifetimes_per_chunk=1)": bench_agent_training(
            "random/dense", a2c.A2C(), {}, hyper.replace(learning_rate=1e-3), num_lifetimes=4,
            num_updates=10, num_envs=64, repeats=repeats, lifetimes_per_chunk=1),
    }
    results["peak_rss_mib"] = _peak_rss_mib()
    return results


def bench_gymnax(repeats: int) -> dict:
    """gymnax tasks: the adapter's cost against stepping the raw gymnax env in the same process
    (alternating, `repeats` timings each; 64 envs × 1024 random-action steps in one scan), and
    A2C training env-steps/s (8 lifetimes × 64 envs, T = 20, 20 updates, Adam at α_lr = 1e-3) and
    PPO's (4 epochs × 4 minibatches, 16 envs × T = 32 as in its CartPole learning test; 1 lifetime,
    a single run, and 8 lifetimes, e.g. 8 seeds, in one vmap)."""
    from envs.wrappers import gymnax as gymnax_wrapper  # pylint: disable=g-import-not-at-top

    out = {}
    for name in ("gymnax/CartPole-v1", "gymnax/Breakout-MinAtar"):
        raw, wrapped = (jax.jit(f) for f in gymnax_wrapper.raw_vs_wrapped_step_fns(name, 64, 1024))
        key = jax.random.key(0)
        jax.block_until_ready((raw(key), wrapped(key)))  # compile both first
        times = {"raw": [], "wrapped": []}
        for _ in range(repeats):  # alternate, so drift of the shared machine hits both alike
            for label, fn in (("raw", raw), ("wrapped", wrapped)):
                start = time.perf_counter()
                jax.block_until_ready(fn(key))
                times[label].append(time.perf_counter() - start)
        raw_s, wrapped_s = (statistics.median(times[k]) for k in ("raw", "wrapped"))
        out[name] = {"raw_steps_per_s": 64 * 1024 / raw_s, "wrapped_steps_per_s": 64 * 1024 / wrapped_s,
                     "adapter_overhead": wrapped_s / raw_s - 1.0}
        hyper = _a2c_hyper().replace(learning_rate=1e-3)
        out[name]["a2c_training"] = bench_agent_training(
            name, a2c.A2C(), {}, hyper, num_lifetimes=8, num_updates=20, num_envs=64, repeats=repeats)
        for lifetimes in (1, 8):
            out[name][f"ppo_training_{lifetimes}_lifetimes"] = bench_agent_training(
                name, ppo.PPO(), {}, hyper, num_lifetimes=lifetimes, num_updates=20, num_envs=16,
                unroll_length=32, repeats=repeats)
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def bench_brax(repeats: int) -> dict:
    """brax tasks per backend: env-steps/s of raw brax (EpisodeWrapper + AutoResetWrapper, which
    restarts from the first state) and of `BraxEnv` with its default fresh reset per episode and
    with auto_reset="initial", on the same keys and random actions (one scan of --brax_steps
    steps on --brax_num_envs envs), alternating `repeats` timings each after a compile run.
    Reports the adapter's overhead ("initial" against raw brax: the same reset semantics) and the
    fresh reset's cost against "initial". Then PPO training env-steps/s on --brax_ppo_tasks
    (16 envs × T = 32, 4 epochs × 4 minibatches, as in the inverted_pendulum learning test;
    1 lifetime and 8 lifetimes in one vmap)."""
    from envs.wrappers import brax as brax_wrapper  # pylint: disable=g-import-not-at-top

    num_envs, num_steps = _BRAX_NUM_ENVS.value, _BRAX_STEPS.value
    out = {"num_envs": num_envs, "num_steps": num_steps}
    for env_name in _BRAX_ENVS.value:
        for backend in _BRAX_BACKENDS.value:
            name = brax_wrapper.task_name(env_name, backend)
            raw, fresh = brax_wrapper.raw_vs_wrapped_step_fns(name, num_envs, num_steps, auto_reset="fresh")
            _, initial = brax_wrapper.raw_vs_wrapped_step_fns(name, num_envs, num_steps, auto_reset="initial")
            fns = {"raw": raw, "fresh": fresh, "initial": initial}
            key = jax.random.key(0)
            result = {}
            for label, fn in fns.items():  # compile (and run once) each first
                start = time.perf_counter()
                jax.block_until_ready(fn(key))
                result[f"{label}_compile_and_first_run_s"] = time.perf_counter() - start
            times = {label: [] for label in fns}
            for _ in range(repeats):  # alternate, so drift of the shared machine hits all alike
                for label, fn in fns.items():
                    start = time.perf_counter()
                    jax.block_until_ready(fn(key))
                    times[label].append(time.perf_counter() - start)
            seconds = {label: statistics.median(t) for label, t in times.items()}
            result.update({f"{label}_steps_per_s": num_envs * num_steps / s for label, s in seconds.items()})
            # Like for like: raw brax's AutoResetWrapper also restarts from the first state.
            result["adapter_overhead"] = seconds["initial"] / seconds["raw"] - 1.0
            result["fresh_reset_cost"] = seconds["fresh"] / seconds["initial"] - 1.0
            out[name] = result
            print(json.dumps({name: result}), file=sys.stderr, flush=True)  # progress: the section is long
    hyper = _a2c_hyper().replace(learning_rate=1e-3)
    for name in _BRAX_PPO_TASKS.value:
        for lifetimes in (1, 8):
            result = bench_agent_training(name, ppo.PPO(), {}, hyper, num_lifetimes=lifetimes,
                                          num_updates=20, num_envs=16, unroll_length=32, repeats=repeats)
            out.setdefault(name, {})[f"ppo_training_{lifetimes}_lifetimes"] = result
            print(json.dumps({name: {f"ppo_training_{lifetimes}_lifetimes": result}}), file=sys.stderr, flush=True)
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def bench_metatest(repeats: int) -> dict:
    """Cost of a meta-test env step with a frozen LPG (LSTM-256, m=30) vs A2C, tabular/dense."""
    rule = lpg_rule.LPG(hidden_size=_HIDDEN.value, y_dim=30)
    params = rule.init_params(jax.random.key(0))
    out = {}
    for name, (r, p) in {"A2C": (a2c.A2C(), {}), "LPG": (rule, params)}.items():
        hyper = _a2c_hyper().replace(rule={k: v[0] for k, v in r.hyper_grid.items()})
        out[name] = bench_agent_training("tabular/dense", r, p, hyper, num_lifetimes=8,
                                         num_updates=50, num_envs=64, repeats=repeats)
    out["lpg_over_a2c_time_per_step"] = out["A2C"]["env_steps_per_s"] / out["LPG"]["env_steps_per_s"]
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _matmul_gflops(m: int, k: int, n: int, repeats: int) -> float:
    """Median GFLOP/s of an f32 [m, k] @ [k, n] matmul (jitted, inputs on device)."""
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
    compiled = jax.jit(jnp.matmul).lower(a, b).compile()
    return 2.0 * m * k * n / _time_compiled(compiled, a, b, repeats=max(repeats, 5)) / 1e9


def bench_matmul(repeats: int) -> dict:
    """This machine's dense f32 matmul rate: a large square one and the LPG LSTM gate matmul
    ([64 lifetimes · 64 envs, 256 + 6] @ [262, 4 · 256]). The peak is the larger of the two."""
    out = {"square_2048_gflops": _matmul_gflops(2048, 2048, 2048, repeats),
           "lstm_4096x262x1024_gflops": _matmul_gflops(4096, 262, 1024, repeats)}
    out["peak_gflops"] = max(out.values())
    return out


def paper_trainer(num_updates: int = 5, num_lifetimes: int = 64, hidden: int = 256, mesh=None,
                  remat: str = "full", lifetimes_per_chunk: int = 0,
                  matmul_dtype: str = "float32") -> trainer_lib.MetaTrainer:
    """The issue-4 benchmark configuration: LSTM-256, m = 30, T = 20, 64 envs per lifetime, K = 5,
    64 lifetimes of tabular/dense (full 3M-step lifetimes)."""
    task = envs.make("tabular/dense")
    rule = lpg_rule.LPG(hidden_size=hidden, y_dim=30, matmul_dtype=matmul_dtype)
    agent = training.build_agent(task, rule.output_spec)
    critic = training.build_agent(task, types.OutputSpec(value=True))
    spec = population.GroupSpec(task=task, agent=agent, critic=critic, rule=rule,
                                num_lifetimes=num_lifetimes, num_envs=64,
                                lifetime_steps=task.lifetime_steps)
    return trainer_lib.MetaTrainer(rule=rule, groups=(spec,),
                                   num_updates=num_updates, unroll_length=20, remat=remat,
                                   lifetimes_per_chunk=lifetimes_per_chunk, mesh=mesh)


def measure_meta(trainer: trainer_lib.MetaTrainer, repeats: int, count_flops: bool = True,
                 profile_dir: str = "") -> dict:
    """Times `trainer`'s compiled meta-step (median of `repeats` after one warm-up); with
    `profile_dir`, then writes a jax.profiler trace of 2 more steps there."""
    start = time.perf_counter()
    state = trainer.jit_init()(jax.random.key(0))
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = trainer.compiled_step()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    state, _ = compiled(state)  # warm-up
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = compiled(state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    if profile_dir:
        with jax.profiler.trace(profile_dir):
            for _ in range(2):
                state, _ = compiled(state)
            jax.block_until_ready(state)
    spec = trainer.groups[0]
    inner = spec.num_lifetimes * trainer.num_updates * trainer.unroll_length * spec.num_envs
    out = {
        "config": {"hidden": trainer.rule.hidden_size, "y_dim": trainer.rule.y_dim,
                   "matmul_dtype": trainer.rule.matmul_dtype,
                   "T": trainer.unroll_length, "num_envs": spec.num_envs, "K": trainer.num_updates,
                   "lifetimes": spec.num_lifetimes, "task": spec.task.name, "remat": trainer.remat,
                   "lifetimes_per_chunk": trainer.lifetimes_per_chunk, "devices": trainer.num_devices},
        "seconds_per_meta_step": seconds,
        "all_step_seconds": times,
        "inner_env_steps_per_s": inner / seconds,
        "inner_env_steps_per_s_per_device": inner / seconds / trainer.num_devices,
        "all_env_steps_per_s": spec.num_lifetimes * trainer.steps_per_meta_step(spec) / seconds,
        "compile_s": compile_s,
        "init_s": init_s,
        # XLA's buffer assignment for the step, per device: the honest memory figure on CPU too.
        "xla_temp_mib": memory.temp_size_in_bytes / 2**20,
        "xla_argument_mib": memory.argument_size_in_bytes / 2**20,
        "xla_output_mib": memory.output_size_in_bytes / 2**20,
        "peak_rss_mib": _peak_rss_mib(),
        "meta_loss_finite": bool(jnp.isfinite(metrics["meta_loss"])),
    }
    if count_flops:
        flops = profiling.matmul_flops(trainer.step, trainer.abstract_state())
        out["matmul_gflop_per_meta_step"] = flops / 1e9
        out["achieved_gflops"] = flops / seconds / 1e9
        out["xla_cost_analysis_gflop (while bodies counted once)"] = (
            compiled.cost_analysis().get("flops", float("nan")) / 1e9)
    return out


def bench_meta(repeats: int) -> dict:
    """Meta-training throughput at the paper architecture (issue 3/4 target), its matmul FLOP/s
    as a fraction of this machine's matmul peak measured in the same run, and an optional
    jax.profiler trace of a few steps (--profile_dir)."""
    peak = bench_matmul(repeats)
    trainer = paper_trainer(_K.value, _META_LIFETIMES.value, _HIDDEN.value, remat=_REMAT.value)
    out = measure_meta(trainer, repeats, profile_dir=_PROFILE_DIR.value)
    out["matmul_peak"] = peak
    out["fraction_of_matmul_peak"] = out["achieved_gflops"] / peak["peak_gflops"]
    # Side by side: the LSTM gate matmul on bf16 operands (rule.matmul_dtype), same everything else.
    bf16 = measure_meta(paper_trainer(_K.value, _META_LIFETIMES.value, _HIDDEN.value, remat=_REMAT.value,
                                      matmul_dtype="bfloat16"), repeats, count_flops=False)
    out["bfloat16_lstm_matmul"] = {k: bf16[k] for k in ("seconds_per_meta_step", "all_step_seconds",
                                                        "inner_env_steps_per_s", "compile_s")}
    if _PROFILE_DIR.value:
        out["profile_dir"] = _PROFILE_DIR.value
    if _BASELINE_REF.value:
        out["side_by_side"] = compare_with_ref(_BASELINE_REF.value, repeats, _ROUNDS.value)
    return out


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compare_with_ref(ref: str, repeats: int, rounds: int) -> dict:
    """The meta section's step (paper architecture) in this tree and in a checkout of `ref`,
    `rounds` fresh-process pairs alternating between the trees (so load on the shared machine
    hits both alike); medians over all timed steps of each tree and their ratio."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    spec = dict(trainer={"num_updates": _K.value, "num_lifetimes": _META_LIFETIMES.value,
                         "hidden": _HIDDEN.value, "remat": _REMAT.value},
                repeats=repeats, count_flops=False)
    times = {"current": [], f"baseline {ref} ({commit})": []}
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "baseline")
        subprocess.run(["git", "worktree", "add", "--detach", tree, ref], cwd=REPO,
                       capture_output=True, check=True)
        try:
            for _ in range(rounds):
                for name, cwd in zip(times, (REPO, tree)):
                    times[name] += _probe("meta", cwd=cwd, **spec)["all_step_seconds"]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=REPO, check=False)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    current, baseline = medians.values()
    return {"seconds_per_meta_step": medians, "all_step_seconds": times,
            "current_over_baseline": current / baseline, "rounds": rounds, "repeats": repeats}


# --- sections that need fresh processes (a device count, an empty compilation cache) ---------


def _probe(kind: str, devices: int = 1, cwd: str = "", **kwargs) -> dict:
    """Runs `python -m launch.benchmark --probe=...` with `devices` fake CPU devices; its JSON.

    cwd: the source tree to run (default this one); `python -m` imports from the working
    directory first, so another checkout runs its own code with this environment's packages."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, "-m", "launch.benchmark", "--probe=" + json.dumps({"kind": kind, **kwargs})]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=cwd or REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"probe {kind} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_probe(spec: dict) -> dict:
    kind = spec.pop("kind")
    if kind == "meta":  # the paper-architecture meta-step sharded over this process's devices
        trainer = paper_trainer(mesh=sharding.population_mesh(), **spec.pop("trainer", {}))
        return measure_meta(trainer, **spec)
    if kind == "compile":  # the CPU default config, as launch/train.py compiles it
        from experiments.configs import lpg as lpg_configs  # pylint: disable=g-import-not-at-top
        from launch import build  # pylint: disable=g-import-not-at-top
        from launch import checkpoints  # pylint: disable=g-import-not-at-top
        from launch import train_loop  # pylint: disable=g-import-not-at-top

        train_loop.enable_compilation_cache(spec["cache_dir"])
        start = time.perf_counter()
        config = lpg_configs.get_config("cpu")
        mesh = sharding.population_mesh()
        trainer = build.make_trainer(config, mesh)
        build_s = time.perf_counter() - start
        state, step_fn, loaded = train_loop.prepare(
            trainer, jax.random.key(0), train_loop.program_config(checkpoints.config_to_json(config)),
            mesh, os.path.join(spec["cache_dir"], "executables") if spec["executables"] else "")
        jax.block_until_ready(state)
        ready_s = time.perf_counter() - start
        state, _ = step_fn(state)
        jax.block_until_ready(state)
        return {"build_s": build_s, "init_and_step_ready_s": ready_s - build_s,
                "first_step_done_s": time.perf_counter() - start, "step_loaded_from_cache": loaded}
    if kind == "es":
        return measure_es(**spec)
    if kind == "epg":
        return measure_epg(**spec)
    if kind == "metagenrl":
        return measure_metagenrl(**spec)
    raise app.UsageError(f"unknown probe kind {kind!r}")


def measure_es(tasks: str, repeats: int, hidden: int = 256, population: int = 8, updates: int = 250,
               num_envs: int = 64, unroll_length: int = 20) -> dict:
    """ES meta-training env-steps/s of LPG (lpg.py config, estimator "es") sharded over this
    process's devices: `population` candidates per task, each a whole lifetime of `updates`
    updates of num_envs × unroll_length steps, forward only. Median over `repeats` generations."""
    from experiments.configs import lpg as lpg_configs  # pylint: disable=g-import-not-at-top
    from launch import build  # pylint: disable=g-import-not-at-top

    config = lpg_configs.get_config("cpu")
    config.rule.hidden_size = hidden
    config.meta.tasks = tasks
    config.meta.estimator = "es"
    config.meta.es.population = population
    config.meta.num_envs = num_envs
    config.meta.unroll_length = unroll_length
    steps_per_update = num_envs * unroll_length
    # lifetime_scale so that every task's lifetime is `updates` updates (U = lifetime // (T·B)).
    lifetimes = {name: envs.make(name).lifetime_steps for name in build.parse_tasks(tasks)}
    if len(set(lifetimes.values())) != 1:
        raise ValueError(f"the es benchmark needs tasks of one lifetime length, got {lifetimes}")
    config.meta.lifetime_scale = (updates * steps_per_update + 0.5) / next(iter(lifetimes.values()))
    mesh = sharding.population_mesh()
    trainer = build.make_trainer(config, mesh)
    assert all(trainer.num_updates(g) == updates for g in trainer.groups)
    return {"tasks": tasks, "devices": mesh.size, "hidden": hidden, "population": population,
            "updates": updates, "num_envs": num_envs, "unroll_length": unroll_length,
            **_time_generations(trainer, repeats)}


def _time_generations(trainer, repeats: int) -> dict:
    """Env-steps/s of an ES trainer's generations (median of `repeats` after a compile run)."""
    start = time.perf_counter()
    state = trainer.jit_init()(jax.random.key(0))
    step = trainer.compiled_step()
    state, _ = step(state)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    env_steps = sum(g.num_lifetimes * trainer.steps_per_meta_step(g) for g in trainer.groups)
    return {"env_steps_per_generation": env_steps, "seconds_per_generation": seconds,
            "env_steps_per_s": env_steps / seconds, "compile_and_first_s": compile_s,
            "meta_loss": float(metrics["meta_loss"]), "peak_rss_mib": _peak_rss_mib()}


def measure_epg(task: str, preset: str, repeats: int, population: int = 8, updates: int = 10) -> dict:
    """EPG's inner loop (ES candidates training fresh agents with L_φ, forward only) on `task`
    with an epg.py preset's loss network and streams, `updates` updates per lifetime."""
    from experiments.configs import epg as epg_configs  # pylint: disable=g-import-not-at-top
    from launch import build  # pylint: disable=g-import-not-at-top

    config = epg_configs.get_config(preset)
    config.meta.tasks = config.eval.tasks = task
    config.meta.es.population = population
    config.meta.lifetime_steps = updates * config.meta.num_envs * config.meta.unroll_length
    trainer = build.make_trainer(config, sharding.population_mesh())
    return {"task": task, "preset": preset, "population": population, "updates": updates,
            "num_envs": config.meta.num_envs, "unroll_length": config.meta.unroll_length,
            "buffer_length": config.rule.buffer_length, **_time_generations(trainer, repeats)}


def bench_epg(repeats: int) -> dict:
    """EPG inner-loop env-steps/s per physics backend: brax/random_hopper on positional, spring,
    generalized and MJX with the paper's loss network (hopper preset: 8 streams × M = 128, N =
    128), and gymnax/random_pendulum with the cpu preset's small network; 8 candidates × 10
    updates per generation, one fresh process each."""
    out = {}
    runs = [(f"brax/random_hopper-{b}", "hopper") for b in ("positional", "spring", "generalized")]
    runs += [("brax/random_hopper", "hopper"), ("gymnax/random_pendulum", "cpu")]
    for task, preset in runs:
        out[task] = _probe("epg", task=task, preset=preset, repeats=repeats)
        print(json.dumps({task: out[task]}), file=sys.stderr, flush=True)
    return out


def metagenrl_config(preset: str, num_agents: int, overrides: dict | None = None):
    """An experiments/configs/metagenrl.py preset with meta.num_agents = `num_agents` (in total,
    split evenly over the preset's tasks) and `overrides` applied: {"agent.hidden": [8], ...},
    dotted config keys. Lists become tuples, since a probe's JSON spec has no tuples."""
    from experiments.configs import metagenrl as metagenrl_configs  # pylint: disable=g-import-not-at-top

    config = metagenrl_configs.get_config(preset)
    config.meta.num_agents = num_agents
    for dotted_key, value in (overrides or {}).items():
        *sections, name = dotted_key.split(".")
        node = config
        for section in sections:
            node = node[section]
        node[name] = tuple(value) if isinstance(value, list) else value
    return config


def _tree_mib(tree) -> float:
    """Total size of a pytree's arrays in MiB (typed PRNG keys counted by their key data)."""
    def nbytes(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return x.nbytes
    return sum(nbytes(x) for x in jax.tree.leaves(tree)) / 2**20


def measure_metagenrl(preset: str, num_agents: int, steps_per_call: int, repeats: int,
                      overrides: dict | None = None) -> dict:
    """MetaGenRL meta-training throughput and memory of one preset (`metagenrl_config`) on one
    device (mesh=None), as launch/train.py runs it: `jit_init()`, then the ahead-of-time compiled
    `jit_step()` (`compiled_step()`, state donated).

    Timing: one warm-up meta-step after compiling, then `repeats` timed calls of `steps_per_call`
    meta-steps each (a Python loop of the compiled step, blocking on the state at the end only,
    so dispatch overlaps the previous step); figures use the median call. Per meta-step every
    agent takes td3.critic_steps_per_actor_step (policy_delay) × num_envs env steps,
    critic_steps_per_actor_step critic steps (one batch each, whatever num_envs), one policy
    step, and contributes to one meta-gradient (α) step; rates are those counts × meta-steps/s.

    Memory: the train state's size (α, its Adam state and every agent's networks, optimiser
    states and replay buffer, which dominates) and the buffers alone; XLA's temp buffers of the
    step; and this process's peak RSS (run it in a fresh process, `_probe("metagenrl", ...)`,
    so that nothing else inflates it).
    """
    from launch import build  # pylint: disable=g-import-not-at-top

    config = metagenrl_config(preset, num_agents, overrides)
    trainer = build.make_trainer(config)  # mesh=None: the default (single) device
    start = time.perf_counter()
    state = trainer.jit_init()(jax.random.key(int(config.seed)))
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start  # compiles init, then each agent's random-action warm-up
    # Sizes now: the step donates this state, and its shapes never change.
    train_state_mib = _tree_mib(state)
    replay_buffer_mib = sum(_tree_mib(group_agents.buffer) for group_agents in state.agents)

    start = time.perf_counter()
    step = trainer.compiled_step()
    compile_s = time.perf_counter() - start
    memory = step.memory_analysis()
    start = time.perf_counter()
    state, metrics = step(state)
    jax.block_until_ready(state)
    first_step_s = time.perf_counter() - start

    call_seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps_per_call):
            state, metrics = step(state)
        jax.block_until_ready((state, metrics))
        call_seconds.append(time.perf_counter() - start)
    seconds_per_meta_step = statistics.median(call_seconds) / steps_per_call
    meta_steps_per_s = 1.0 / seconds_per_meta_step

    td3_config = trainer.td3
    env_steps_per_agent = trainer.steps_per_meta_step()  # policy_delay × num_envs
    critic_steps_per_agent = td3_config.critic_steps_per_actor_step
    return {
        "config": {"preset": preset, "tasks": {g.task.name: g.num_agents for g in trainer.groups},
                   "num_agents": trainer.num_agents, "num_envs": td3_config.num_envs,
                   "critic_steps_per_policy_step": critic_steps_per_agent,
                   "hidden": list(td3_config.hidden), "batch_size": td3_config.batch_size,
                   "buffer_capacity": td3_config.buffer_capacity,
                   "lstm_size": trainer.objective.lstm_size, "inner_steps": trainer.inner_steps,
                   "sequence_batch_size": trainer.sequence_batch_size,
                   "sequence_length": trainer.sequence_length, "devices": trainer.num_devices,
                   "overrides": overrides or {}},
        "meta_steps_per_call": steps_per_call,
        "repeats": repeats,
        "all_call_seconds": call_seconds,
        "seconds_per_meta_step": seconds_per_meta_step,
        "meta_steps_per_s": meta_steps_per_s,
        "env_steps_per_meta_step_per_agent": env_steps_per_agent,
        "env_steps_per_s": meta_steps_per_s * trainer.num_agents * env_steps_per_agent,
        "critic_steps_per_s": meta_steps_per_s * trainer.num_agents * critic_steps_per_agent,
        "policy_steps_per_s": meta_steps_per_s * trainer.num_agents,
        "meta_gradient_steps_per_s": meta_steps_per_s,
        "init_s": init_s,
        "compile_s": compile_s,
        "first_step_s": first_step_s,
        "train_state_mib": train_state_mib,
        "replay_buffer_mib": replay_buffer_mib,
        "xla_temp_mib": memory.temp_size_in_bytes / 2**20,
        "peak_rss_mib": _peak_rss_mib(),
        "meta_loss_finite": bool(jnp.isfinite(metrics["meta_loss"])),
        "skipped_meta_updates": int(state.skipped_updates),
    }


def bench_metagenrl(repeats: int) -> dict:
    """MetaGenRL meta-training (`measure_metagenrl`) of --metagenrl_agents agents for each of
    --metagenrl_presets, each in a fresh single-device process (so its peak RSS is its own);
    --metagenrl_steps meta-steps per timed call, median over `repeats` calls."""
    out = {}
    for preset in _METAGENRL_PRESETS.value:
        out[preset] = _probe("metagenrl", preset=preset, num_agents=_METAGENRL_AGENTS.value,
                             steps_per_call=_METAGENRL_STEPS.value, repeats=repeats)
        print(json.dumps({preset: out[preset]}), file=sys.stderr, flush=True)  # progress: slow section
    return out


def bench_es(repeats: int) -> dict:
    """ES meta-training of LPG (LSTM-256) on the shape of a public JAX LPG's ES mode (population
    8, whole 250-update lifetimes of 64 envs × T = 20, forward only), on tabular/dense alone and
    on the 5 tabular grids, with the candidates on 1 and on 2 CPU devices (fresh processes)."""
    from experiments.configs import lpg as lpg_configs  # pylint: disable=g-import-not-at-top

    out = {}
    for label, tasks in (("tabular/dense", "tabular/dense"), ("5 tabular grids", ",".join(lpg_configs.TABULAR_GRIDS))):
        for devices in (1, 2):
            out[f"{label}, {devices} device(s)"] = _probe("es", devices=devices, tasks=tasks, repeats=repeats)
            print(json.dumps({label: out[f"{label}, {devices} device(s)"]}), file=sys.stderr, flush=True)
    return out


def bench_compile(repeats: int) -> dict:
    """Start-up of the CPU default config (lpg.py:cpu) as launch/train.py does it
    (train_loop.prepare: build, then init and the meta-step compiled on two threads), each in a
    fresh process: cold (empty cache dir), warm with JAX's persistent compilation cache only
    (tracing and lowering still run), and warm with the executable cache too (the default).
    `init_and_step_ready_s` is the compile time; medians over 3 rounds."""
    del repeats
    runs = {"cold": [], "warm_jax_cache_only": [], "warm": []}
    for _ in range(3):
        with tempfile.TemporaryDirectory() as cache_dir:
            runs["cold"].append(_probe("compile", cache_dir=cache_dir, executables=True))
            runs["warm"].append(_probe("compile", cache_dir=cache_dir, executables=True))
            runs["warm_jax_cache_only"].append(_probe("compile", cache_dir=cache_dir, executables=False))
    out = {}
    for name, rs in runs.items():
        out[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "step_loaded_from_cache"}
        out[name]["step_loaded_from_cache"] = [r["step_loaded_from_cache"] for r in rs]
    out["runs"] = runs
    return out


def bench_memory(repeats: int) -> dict:
    """Peak memory of the paper-architecture meta-step with K = 5 and K = 20 (remat "full"), each
    in its own process: XLA's temp buffer size and the process's peak RSS."""
    del repeats
    out = {}
    for k in (5, 20):
        out[f"K={k}"] = _probe("meta", trainer={"num_updates": k}, repeats=1, count_flops=False)
    for field in ("xla_temp_mib", "peak_rss_mib"):
        out[f"ratio_K20_over_K5_{field}"] = out["K=20"][field] / out["K=5"][field]
    return out


def bench_devices(repeats: int) -> dict:
    """Paper-architecture meta-training with the 64 lifetimes sharded over 1, 2, 4 fake CPU
    devices (one process each), and each one's matmul FLOP/s as a fraction of the matmul peak
    measured here first. The fake devices share the machine's cores: with as many devices as
    cores each shard runs on its own core (launch/train.py --cpu_devices does this by default)."""
    peak = bench_matmul(repeats)
    out = {"matmul_peak": peak}
    for n in (1, 2, 4):
        run = _probe("meta", devices=n, repeats=repeats, count_flops=True)
        run["fraction_of_matmul_peak"] = run["achieved_gflops"] / peak["peak_gflops"]
        out[f"{n}_devices"] = run
    base = out["1_devices"]["inner_env_steps_per_s"]
    for n in (2, 4):
        out[f"total_throughput_{n}_over_1"] = out[f"{n}_devices"]["inner_env_steps_per_s"] / base
    return out


def main(argv):
    del argv
    out = {
        "machine": {"cpu_count": os.cpu_count(), "device_count": jax.local_device_count(), "platform": platform.platform(),
                    "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if _PROBE.value:
        print(json.dumps(run_probe(json.loads(_PROBE.value))))
        return
    sections = {"envs": bench_envs, "a2c": bench_a2c, "gymnax": bench_gymnax, "brax": bench_brax,
                "metatest": bench_metatest,
                "meta": bench_meta, "es": bench_es, "epg": bench_epg, "metagenrl": bench_metagenrl,
                "compile": bench_compile, "memory": bench_memory, "devices": bench_devices}
    for name in _SECTIONS.value:
        if name not in sections:
            raise app.UsageError(f"--sections: unknown section {name!r}; allowed: {sorted(sections)}")
    for name in _SECTIONS.value:
        out[name] = sections[name](_REPEATS.value)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app.run(main)
