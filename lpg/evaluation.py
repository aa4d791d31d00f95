"""Meta-testing: train fresh agents with a frozen rule and measure their learning curves.

`evaluate_rule` trains `seeds` independent agents for each learning rate of a grid, all vmapped
in one jitted call, and returns their learning curves. The best learning rate is the one with the
highest mean final return over seeds ("hyperparameters chosen on a stated grid"), applied the same
way to every rule (LPG and A2C side by side share this code path).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

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
    with np.errstate(all="ignore"):
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
) -> Curves:
    """Trains len(learning_rates) × seeds fresh agents on `task` with `rule` (see module doc)."""
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
    train = training.make_train_fn(
        task, rule, num_lifetimes=num_lifetimes, num_updates=num_updates, num_envs=num_envs,
        unroll_length=unroll_length, y_dim=y_dim)
    _, stats = train(key, batched_hyper, meta_params)
    curves = np.asarray(training.mean_episode_return(stats, window=curve_window))  # [G·S, U]
    curves = curves.reshape(len(grid), seeds, num_updates)
    final = final_returns(curves, final_fraction)
    with np.errstate(all="ignore"):
        best = int(np.nanargmax(np.nan_to_num(np.nanmean(final, axis=1), nan=-np.inf)))
    env_steps = np.arange(1, num_updates + 1) * num_envs * unroll_length
    return Curves(learning_rates=grid, returns=curves, env_steps=env_steps, final=final, best=best)
