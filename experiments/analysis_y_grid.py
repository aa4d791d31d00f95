"""Fig. 4 of Oh et al. 2020: what y looks like on a grid world for a fixed near-optimal policy.

    python -m experiments.analysis_y_grid --workdir runs/analysis/y_grid

On one held-out layout of --task (experiments/analysis_common.py), the policy is ε-soft greedy
w.r.t. the optimal Q of the exact MDP (policy iteration at --discount; ε = --epsilon spread over the
valid actions). It is frozen; a tabular agent's y table (all-zero logits: y uniform) is updated
--updates times by the rule (lpg.agent.agent_update, the policy table set back after each update),
each update on 64 × 20 fresh steps of that policy. Writes to --workdir:

  y_grid.png   V^π, the visit counts and each of the m dimensions of y over the grid cells, with
               the agent on that cell and every object present (the paper's slice);
  y_grid.csv   the same numbers per cell;
  y_grid.json  the layout, the rule and, per y dimension, its correlation with V^π over all
               states visited ≥ --min_visits times.
"""

from __future__ import annotations

import csv
import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import analysis_common as ac
from lpg import training

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_RULE = flags.DEFINE_string("rule", ac.DEFAULT_RULE, "Directory of the saved LPG rule.")
_TASK = flags.DEFINE_string("task", "tabular/dense", "A tabular grid-world task.")
_UPDATES = flags.DEFINE_integer("updates", 1000, "Rule updates of y (policy frozen).")
_SEED = flags.DEFINE_integer("seed", 0, "Picks the held-out layout and the rollouts.")
_DISCOUNT = flags.DEFINE_float("discount", 0.995, "γ given to the rule and of V^π (paper: 0.995).")
_EPSILON = flags.DEFINE_float("epsilon", 0.1, "Probability mass of uniform actions in the policy.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 80.0, "α_lr (SGD, tabular grid: 20/40/80).")
_Y_COST = flags.DEFINE_float("y_cost", 1.0, "α_y, weight of KL(y‖ŷ).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 64, "Parallel environments per update.")
_UNROLL = flags.DEFINE_integer("unroll_length", 20, "Steps per environment per update.")
_MIN_VISITS = flags.DEFINE_integer("min_visits", ac.MIN_VISITS, "States visited fewer times during "
                                   "policy evaluation are left out of the numbers.")


def y_correlations(y: np.ndarray, values: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Pearson correlation of each y dimension with V over `states` ([m]; 0 for constant dims)."""
    ys, v = y[states], values[states]
    ys_c, v_c = ys - ys.mean(0), v - v.mean()
    denom = np.sqrt((ys_c**2).sum(0) * (v_c**2).sum())
    return np.where(denom > 0, (ys_c * v_c[:, None]).sum(0) / np.maximum(denom, 1e-30), 0.0)


def plot(path, env, params, values, visits, y, discount):
    """V^π, visits and the m y maps on the all-objects-present slice, unvisited cells blank."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    cells = ac.all_present_states(env)
    shape = (env.height, env.width)
    seen = visits[cells] >= _MIN_VISITS.value
    masked = lambda a: np.ma.masked_where(~seen.reshape(shape), a.reshape(shape))
    m = y.shape[1]
    cols = 6
    rows = 1 + -(-m // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows))
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    panels = [(f"V^π (γ={discount})", masked(values[cells])),
              ("log10 visits", np.log10(1 + visits[cells]).reshape(shape))]
    for ax, (title, image) in zip(axes[0], panels):
        ax.imshow(image, cmap="viridis")
        ax.set_title(title, fontsize=8)
    for ax in axes[0, len(panels):]:
        ax.axis("off")
    # Objects: + for positive rewards, − for negative, on the value and visit maps.
    for ax in axes[0, :len(panels)]:
        for cell, reward in zip(np.asarray(params.object_cells), np.asarray(params.rewards)):
            ax.text(cell % env.width, cell // env.width, "+" if reward > 0 else "−", ha="center",
                    va="center", color="white" if reward > 0 else "red", fontsize=10, weight="bold")
    for k, ax in enumerate(axes[1:].ravel()):
        if k >= m:
            ax.axis("off")
            continue
        ax.imshow(masked(y[cells, k]), cmap="magma")
        ax.set_title(f"y[{k}]", fontsize=8)
    fig.suptitle("y after policy evaluation with the LPG rule (fixed near-optimal policy)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    start = time.time()
    rule, meta_params, provenance, task = ac.prepare(_WORKDIR.value, _RULE.value, _TASK.value)
    env = task.env
    layout_key, run_key = jax.random.split(ac.held_out_keys(_SEED.value, 1)[0])
    params = jax.tree.map(np.asarray, task.sample_params(layout_key))

    mdp = ac.grid_mdp(env, params)
    greedy, _ = ac.optimal_policy(mdp, _DISCOUNT.value)
    policy = ac.soft_greedy(greedy, mdp.action_mask, _EPSILON.value)
    values = ac.evaluate_policy(mdp, policy, [_DISCOUNT.value])[0]

    learner = ac.Learner(rule, training.build_agent(task, rule.output_spec))
    logits = jnp.asarray(ac.policy_logits(policy))
    state = ac.init_learner_state(learner, jax.random.fold_in(run_key, 0), logits)
    run = jax.jit(ac.make_policy_evaluation(
        env, [learner], num_updates=_UPDATES.value, snapshot_every=_UPDATES.value,
        num_envs=_NUM_ENVS.value, unroll_length=_UNROLL.value))
    hyper = ac.lpg_hyper(_DISCOUNT.value, _LEARNING_RATE.value, _Y_COST.value)
    _, snaps, visits = run(params, logits, (meta_params,), (hyper,), (state,), run_key)
    y = ac.softmax(np.asarray(snaps[0]["y"][-1], np.float64))  # [S, m]
    visits = np.asarray(visits)

    well_visited = np.flatnonzero(visits >= _MIN_VISITS.value)
    corr = y_correlations(y, values, well_visited)
    best = int(np.argmax(np.abs(corr)))
    plot(os.path.join(_WORKDIR.value, "y_grid.png"), env, params, values, visits, y, _DISCOUNT.value)

    cells = ac.all_present_states(env)
    with open(os.path.join(_WORKDIR.value, "y_grid.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cell", "row", "col", "state", "visits", "value"] + [f"y{k}" for k in range(y.shape[1])])
        for cell, s in enumerate(cells):
            writer.writerow([cell, cell // env.width, cell % env.width, int(s), int(visits[s]),
                             f"{values[s]:.6g}"] + [f"{v:.6g}" for v in y[s]])
    summary = dict(
        task=_TASK.value, seed=_SEED.value, rule=_RULE.value, rule_provenance=provenance,
        updates=_UPDATES.value, discount=_DISCOUNT.value, epsilon=_EPSILON.value,
        learning_rate=_LEARNING_RATE.value, y_cost=_Y_COST.value,
        policy="epsilon-soft greedy w.r.t. the exact optimal Q (policy iteration), frozen",
        object_cells=np.asarray(params.object_cells).tolist(), object_rewards=np.asarray(params.rewards).tolist(),
        collect_actions=bool(params.collect_actions), states_visited=int(well_visited.size),
        y_value_correlation=corr.round(4).tolist(), most_value_like_dim=best,
        most_value_like_corr=float(corr[best]), seconds=round(time.time() - start, 1))
    with open(os.path.join(_WORKDIR.value, "y_grid.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{_TASK.value} layout (seed {_SEED.value}): objects at {summary['object_cells']} "
          f"(rewards {summary['object_rewards']}), {'18' if summary['collect_actions'] else '9'} actions")
    print(f"{_UPDATES.value} y-only updates, {well_visited.size} states visited ≥ {_MIN_VISITS.value} times")
    print(f"corr(y_k, V^π) over those states: most value-like dim y[{best}] r = {corr[best]:+.3f}; "
          f"|r| > 0.5 for {int(np.sum(np.abs(corr) > 0.5))} of {corr.size} dims")
    print(f"wrote {_WORKDIR.value}/y_grid.png, y_grid.csv, y_grid.json ({summary['seconds']} s)")


if __name__ == "__main__":
    app.run(main)
