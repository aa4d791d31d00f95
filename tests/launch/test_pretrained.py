"""The rule shipped in experiments/pretrained/ loads and trains agents out of the box."""

import os

import jax
import numpy as np

from launch import checkpoints
from lpg import evaluation
from lpg import types
import envs

PRETRAINED = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "pretrained", "lpg_tabular")


def test_shipped_rule_loads_and_trains_a_tabular_agent():
    rule, params, provenance = checkpoints.load_rule(PRETRAINED)
    assert provenance["step"] > 0
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
    hyper = types.HyperParams(learning_rate=0.0, discount=0.99, entropy_cost=0.0,
                              value_cost=0.0, td_lambda=0.95, rule={"y_cost": 0.5})
    # α_lr = 80 (the grid's top) next to α_lr ≈ 0, which keeps the zero-initialised table's
    # uniform random policy: same code path, same seeds, same budget (150 updates × 16 envs × T = 20).
    budget = evaluation.Budget(num_updates=150, num_envs=16)
    runner = evaluation.LifetimeRunner(envs.make("tabular/dense"), rule, budget, lifetimes_per_call=4)
    curves, diverged = runner.curves(
        params, [hyper.replace(learning_rate=80.0), hyper.replace(learning_rate=1e-9)], [0, 1],
        curve_window=10)
    final = evaluation.final_returns(curves)  # [2 settings, 2 seeds]
    learned, random_policy = np.nanmean(final, axis=1)
    assert evaluation.select(final, diverged) == 0
    assert learned > random_policy + 5.0, (learned, random_policy)
