"""Meta-testing: train fresh agents with a frozen rule and measure their learning curves.

`evaluate_rule` trains `seeds` independent agents for each learning rate of a grid, all vmapped
in one jitted call, and returns their learning curves. The best learning rate is the one with the
highest mean final return over seeds ("hyperparameters chosen on a stated grid"), applied the same
way to every rule (LPG and A2C side by side share this code path).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from envs import task as task_lib
from lpg import training
from lpg import types
from lpg.rules import base as rules_base


@dataclasses.dataclass
class Curves:
    """Learning curves of one rule on one task.

    learning_rates: [G] the grid. returns: [G, S, U] mean completed-episode return per update
    (windowed, carried forward; NaN before the first episode ends). env_steps: [U] env steps per
    lifetime at the end of each update. final: [G, S] mean of the last `final_fraction` of each
    curve. best: index of the learning rate with the highest mean final return.
    """

    learning_rates: np.ndarray
    returns: np.ndarray
    env_steps: np.ndarray
    final: np.ndarray
    best: int

    @property
    def best_final(self) -> np.ndarray:
        """[S] final returns of the seeds at the best learning rate."""
        return self.final[self.best]


def final_returns(curves: np.ndarray, final_fraction: float = 0.1) -> np.ndarray:
    """Mean over the last `final_fraction` of the update axis (last axis), NaN-aware."""
    num_updates = curves.shape[-1]
    tail = max(1, int(round(num_updates * final_fraction)))
    with warnings.catch_warnings():  # seeds that never finished an episode give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(curves[..., -tail:], axis=-1)


def evaluate_rule(
    task: task_lib.Task,
    rule: rules_base.UpdateRule,
    meta_params: Any,
    hyper: types.HyperParams,
    *,
    learning_rates: Sequence[float],
    seeds: int,
    num_updates: int,
    num_envs: int,
    unroll_length: int = 20,
    key: jax.Array,
    y_dim: int = 30,
    curve_window: int = 10,
    final_fraction: float = 0.1,
    updates_per_chunk: int | None = None,
    lifetimes_per_chunk: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Curves:
    """Trains len(learning_rates) × seeds fresh agents on `task` with `rule` (see module doc).

    Runs `updates_per_chunk` updates per jitted call (one compilation; `progress(n)` is called
    after each chunk); `lifetimes_per_chunk` as in `training.train_agents` (1 is fastest for conv
    agents on CPU).
    """
    if seeds <= 0 or num_updates <= 0 or num_envs <= 0:
        raise ValueError(f"seeds, num_updates and num_envs must be positive, got {seeds}, "
                         f"{num_updates}, {num_envs}")
    if not learning_rates or any(lr <= 0 for lr in learning_rates):
        raise ValueError(f"learning_rates must be a non-empty list of positive values, got {learning_rates}")
    grid = np.asarray(learning_rates, np.float32)
    num_lifetimes = len(grid) * seeds
    lr_per_lifetime = jnp.repeat(jnp.asarray(grid), seeds)  # [G·S], seed index fastest
    batched_hyper = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32), (num_lifetimes,)), hyper)
    batched_hyper = batched_hyper.replace(learning_rate=lr_per_lifetime)
    agent = training.build_agent(task, y_dim=y_dim)
    init_key, key = jax.random.split(key)
    states = training.init_lifetimes(task, agent, init_key, num_lifetimes, num_envs)
    chunk = min(updates_per_chunk or num_updates, num_updates)

    @functools.partial(jax.jit, static_argnums=4, donate_argnums=0)
    def run_chunk(states, chunk_key, hyper, meta_params, length):
        return training.continue_training(
            task, rule, agent, meta_params, hyper, states, key=chunk_key, num_updates=length,
            unroll_length=unroll_length, lifetimes_per_chunk=lifetimes_per_chunk)

    all_stats, done = [], 0
    while done < num_updates:
        length = min(chunk, num_updates - done)
        key, chunk_key = jax.random.split(key)
        states, stats = run_chunk(states, chunk_key, batched_hyper, meta_params, length)
        all_stats.append({k: stats[k] for k in ("return_sum", "return_count")})
        done += length
        if progress is not None:
            progress(length)
    stats = {k: np.concatenate([np.asarray(s[k]) for s in all_stats], axis=1) for k in all_stats[0]}
    curves = np.asarray(training.mean_episode_return(stats, window=curve_window))  # [G·S, U]
    curves = curves.reshape(len(grid), seeds, num_updates)
    final = final_returns(curves, final_fraction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = int(np.argmax(np.nan_to_num(np.nanmean(final, axis=1), nan=-np.inf)))
    env_steps = np.arange(1, num_updates + 1) * num_envs * unroll_length
    return Curves(learning_rates=grid, returns=curves, env_steps=env_steps, final=final, best=best)
