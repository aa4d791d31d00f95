"""Throughput benchmarks, printed as one JSON object (a script, never a timed test).

    python -m launch.benchmark                       # everything
    python -m launch.benchmark --sections=envs --repeats=5

Sections:
  envs: environment steps/s under a uniformly random policy (valid actions only), vmapped over
        `--num_envs` (64) environments per family, and the tabular grid at 1024 envs.
  a2c:  A2C training env-steps/s on tabular/dense and random/dense (vmapped / chunked lifetimes).
  metatest: env-steps/s of training fresh agents with a frozen LPG (LSTM-256) vs A2C.
  meta: LPG meta-training at the paper architecture (LSTM-256, m=30, T=20, 64 envs, K=5,
        64 lifetimes, tabular/dense): inner env-steps/s, compile time, peak RSS.
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
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

import envs
from envs import base as env_base
from lpg import training
from lpg import types
from lpg.meta import population
from lpg.meta import trainer as trainer_lib
from lpg.rules import a2c
from lpg.rules import lpg as lpg_rule

_SECTIONS = flags.DEFINE_list("sections", ["envs", "a2c", "metatest", "meta"], "Which benchmarks to run.")
_HIDDEN = flags.DEFINE_integer("hidden", 256, "LSTM width for the meta/metatest sections.")
_K = flags.DEFINE_integer("K", 5, "Updates per meta-gradient for the meta section.")
_META_LIFETIMES = flags.DEFINE_integer("meta_lifetimes", 64, "Lifetimes for the meta section.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per figure (median reported).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 64, "Environments per family for the env benchmark.")
_ENV_STEPS = flags.DEFINE_integer("env_steps", 200, "Steps per timed env rollout.")


def _peak_rss_mib() -> float:
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
    return types.HyperParams(learning_rate=40.0, discount=0.99, y_cost=0.5, entropy_cost=0.01,
                             value_cost=0.5, td_lambda=0.95)


def bench_agent_training(task_name, rule, meta_params, hyper, *, num_lifetimes, num_updates,
                         num_envs, repeats, lifetimes_per_chunk=None) -> dict:
    """Env-steps/s of `training.make_train_fn` (whole lifetimes' updates in one jit)."""
    task = envs.make(task_name)
    fn = training.make_train_fn(
        task, rule, num_lifetimes=num_lifetimes, num_updates=num_updates, num_envs=num_envs,
        unroll_length=20, y_dim=getattr(rule, "y_dim", 30), lifetimes_per_chunk=lifetimes_per_chunk)
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = fn.lower(key, hyper, meta_params).compile()
    compile_s = time.perf_counter() - start
    seconds = _time_compiled(compiled, key, hyper, meta_params, repeats=repeats)
    return {"lifetimes": num_lifetimes, "num_envs": num_envs, "updates": num_updates,
            "lifetimes_per_chunk": lifetimes_per_chunk,
            "env_steps_per_s": num_lifetimes * num_updates * num_envs * 20 / seconds,
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


def bench_metatest(repeats: int) -> dict:
    """Cost of a meta-test env step with a frozen LPG (LSTM-256, m=30) vs A2C, tabular/dense."""
    rule = lpg_rule.LPG(hidden_size=_HIDDEN.value, y_dim=30)
    params = rule.init_params(jax.random.key(0))
    out = {}
    for name, (r, p) in {"A2C": (a2c.A2C(), {}), "LPG": (rule, params)}.items():
        out[name] = bench_agent_training("tabular/dense", r, p, _a2c_hyper(), num_lifetimes=8,
                                         num_updates=50, num_envs=64, repeats=repeats)
    out["lpg_over_a2c_time_per_step"] = out["A2C"]["env_steps_per_s"] / out["LPG"]["env_steps_per_s"]
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def bench_meta(repeats: int) -> dict:
    """Meta-training throughput at the paper architecture (issue 3/4 target).

    LSTM-256, m = 30, T = 20, 64 envs per lifetime, K = 5, 64 lifetimes, tabular/dense. A
    meta-step takes K updates + 1 meta-objective rollout per lifetime; `inner_env_steps_per_s`
    counts only the K updates' steps, `all_env_steps_per_s` counts all of them.
    """
    task = envs.make("tabular/dense")
    agent = training.build_agent(task, y_dim=30)
    spec = population.GroupSpec(task=task, agent=agent, critic=agent,
                                num_lifetimes=_META_LIFETIMES.value, num_envs=64,
                                lifetime_steps=task.lifetime_steps)
    trainer = trainer_lib.MetaTrainer(rule=lpg_rule.LPG(hidden_size=_HIDDEN.value, y_dim=30),
                                      groups=(spec,), num_updates=_K.value, unroll_length=20)
    state = trainer.init(jax.random.key(0))
    step = jax.jit(trainer.step, donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state).compile()
    compile_s = time.perf_counter() - start
    state, _ = compiled(state)  # warm-up
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = compiled(state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    inner = spec.num_lifetimes * trainer.num_updates * trainer.unroll_length * spec.num_envs
    return {
        "config": {"hidden": _HIDDEN.value, "y_dim": 30, "T": 20, "num_envs": 64, "K": _K.value,
                   "lifetimes": spec.num_lifetimes, "task": "tabular/dense"},
        "seconds_per_meta_step": seconds,
        "inner_env_steps_per_s": inner / seconds,
        "all_env_steps_per_s": spec.num_lifetimes * trainer.steps_per_meta_step(spec) / seconds,
        "compile_s": compile_s,
        "peak_rss_mib": _peak_rss_mib(),
        "meta_loss_finite": bool(jnp.isfinite(metrics["meta_loss"])),
    }


def main(argv):
    del argv
    out = {
        "machine": {"cpu_count": os.cpu_count(), "device_count": jax.local_device_count(), "platform": platform.platform(),
                    "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    sections = {"envs": bench_envs, "a2c": bench_a2c, "metatest": bench_metatest, "meta": bench_meta}
    for name in _SECTIONS.value:
        if name not in sections:
            raise app.UsageError(f"--sections: unknown section {name!r}; allowed: {sorted(sections)}")
    for name in _SECTIONS.value:
        out[name] = sections[name](_REPEATS.value)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app.run(main)
