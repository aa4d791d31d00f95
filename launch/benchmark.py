"""Throughput benchmarks, printed as one JSON object (a script, never a timed test).

    python -m launch.benchmark                       # everything
    python -m launch.benchmark --sections=envs --repeats=5

Sections:
  envs: environment steps/s under a uniformly random policy (valid actions only), vmapped over
        `--num_envs` (64) environments per family, and the tabular grid at 1024 envs.
  a2c:  A2C training env-steps/s on tabular/dense and random/dense (lifetimes vmapped).
Every figure is the median over `--repeats` timed runs after one compile run; compile times are
measured separately with `jit(...).lower(...).compile()`. Peak RSS is the process high-water mark
after each section. The machine is shared: compare variants within one run.
"""

from __future__ import annotations

import json
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

_SECTIONS = flags.DEFINE_list("sections", ["envs", "a2c"], "Which benchmarks to run.")
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
        logits = jnp.where(mask, 0.0, -jnp.inf)

        def one_step(carry, step_key):
            states, total = carry
            act_key, env_key = jax.random.split(step_key)
            actions = jax.random.categorical(act_key, logits, shape=(num_envs,))
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


def bench_a2c(repeats: int) -> dict:
    from lpg import training  # pylint: disable=g-import-not-at-top

    results = {}
    for name, lifetimes in (("tabular/dense", 8), ("random/dense", 4)):
        results[name] = training.benchmark_a2c(name, num_lifetimes=lifetimes, repeats=repeats)
    results["peak_rss_mib"] = _peak_rss_mib()
    return results


def main(argv):
    del argv
    out = {
        "machine": {"cpu_count": jax.local_device_count(), "platform": platform.platform(),
                    "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    sections = {"envs": bench_envs, "a2c": bench_a2c}
    for name in _SECTIONS.value:
        if name not in sections:
            raise app.UsageError(f"--sections: unknown section {name!r}; allowed: {sorted(sections)}")
    for name in _SECTIONS.value:
        out[name] = sections[name](_REPEATS.value)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app.run(main)
