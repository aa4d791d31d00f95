"""Fig. 6 of Oh et al. 2020: do two differently initialised y converge under the rule?

    python -m experiments.analysis_y_convergence --workdir runs/analysis/y_convergence

On --num_layouts held-out layouts of --task (experiments/analysis_common.py), the policy is the
frozen ε-soft greedy policy of analysis_y_grid.py (exact optimal Q by policy iteration). Two agents
share it and differ only in their y table, initialised with N(0, --init_scale²) logits from two
different keys. Every update both are updated by the rule (lpg.agent.agent_update) on the *same*
rollout of 64 × 20 steps. KL(y0‖y1) is averaged over the states visited ≥ --min_visits times in the
whole run (others are never updated, so they would keep their initial KL), every
--snapshot_every updates: once uniformly over those states, once weighted by their visit counts. Writes to --workdir:

  y_convergence.png   mean KL over updates (each layout thin, their mean thick, log scale), and
                      three y dimensions of y0 (top) and y1 (bottom) before / after on layout 0;
  y_convergence.csv   KL per snapshot and layout;
  y_convergence.json  summary (KL at update 0 and at the end, per layout and mean).
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
_UPDATES = flags.DEFINE_integer("updates", 1000, "Rule updates of both y (policy frozen).")
_SEED = flags.DEFINE_integer("seed", 0, "Picks the held-out layouts, the inits and the rollouts.")
_NUM_LAYOUTS = flags.DEFINE_integer("num_layouts", 8, "Held-out layouts (paper: 128).")
_SNAPSHOT_EVERY = flags.DEFINE_integer("snapshot_every", 25, "Updates between KL measurements.")
_INIT_SCALE = flags.DEFINE_float("init_scale", 1.0, "Std of the initial y logits.")
_DISCOUNT = flags.DEFINE_float("discount", 0.995, "γ given to the rule.")
_EPSILON = flags.DEFINE_float("epsilon", 0.1, "Probability mass of uniform actions in the policy.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 80.0, "α_lr (SGD, tabular grid: 20/40/80).")
_Y_COST = flags.DEFINE_float("y_cost", 1.0, "α_y, weight of KL(y‖ŷ).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 64, "Parallel environments per update.")
_UNROLL = flags.DEFINE_integer("unroll_length", 20, "Steps per environment per update.")
_MIN_VISITS = flags.DEFINE_integer("min_visits", ac.MIN_VISITS, "States visited fewer times during "
                                   "policy evaluation are left out of the numbers.")


def plot(path, updates, kl, kl_weighted, y0, y1, shape, cells):
    """kl, kl_weighted [N, L]; y0, y1 [N, S, m] logits of layout 0 (first and last snapshot used)."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    fig = plt.figure(figsize=(14, 4))
    grid = fig.add_gridspec(2, 8)
    ax = fig.add_subplot(grid[:, :2])
    ax.plot(updates, kl, color="tab:blue", alpha=0.3, lw=0.8)
    ax.plot(updates, kl.mean(axis=1), color="tab:blue", lw=2, label=f"mean of {kl.shape[1]} layouts")
    ax.plot(updates, kl_weighted.mean(axis=1), color="tab:orange", lw=2, label="visit-weighted mean")
    ax.set_yscale("log")
    ax.set_xlabel("rule updates")
    ax.set_ylabel("KL(y0 ‖ y1), mean over visited states")
    ax.legend(fontsize=8)
    final = ac.softmax(y0[-1][cells])
    dims = np.argsort(-final.std(axis=0))[:3]  # the dims that vary most over the grid at the end
    for col, (when, index) in enumerate([("before", 0), ("after", -1)]):
        for j, dim in enumerate(dims):
            for row, y in enumerate((y0, y1)):
                a = fig.add_subplot(grid[row, 2 + 3 * col + j])
                a.imshow(ac.softmax(y[index][cells])[:, dim].reshape(shape), cmap="magma")
                a.set_xticks([]), a.set_yticks([])
                a.set_title(f"y{row}[{dim}] {when}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    start = time.time()
    rule, meta_params, provenance, task = ac.prepare(_WORKDIR.value, _RULE.value, _TASK.value)
    env = task.env
    keys = ac.held_out_keys(_SEED.value, _NUM_LAYOUTS.value)
    layout_keys, init_keys, run_keys = (jnp.stack(k) for k in zip(*(jax.random.split(k, 3) for k in keys)))
    layouts = ac.sample_layouts(task, layout_keys)
    logits = []
    for i in range(_NUM_LAYOUTS.value):
        mdp = ac.grid_mdp(env, ac.index_tree(layouts, i))
        greedy, _ = ac.optimal_policy(mdp, _DISCOUNT.value)
        logits.append(ac.policy_logits(ac.soft_greedy(greedy, mdp.action_mask, _EPSILON.value)))
    logits = jnp.asarray(np.stack(logits))

    learner = ac.Learner(rule, training.build_agent(task, rule.output_spec))
    init = lambda k, lg: ac.init_learner_state(learner, k, lg, y_init_scale=_INIT_SCALE.value)
    states0 = jax.vmap(init)(jax.vmap(lambda k: jax.random.fold_in(k, 0))(init_keys), logits)
    states1 = jax.vmap(init)(jax.vmap(lambda k: jax.random.fold_in(k, 1))(init_keys), logits)
    run = ac.make_policy_evaluation(env, [learner, learner], num_updates=_UPDATES.value,
                                    snapshot_every=_SNAPSHOT_EVERY.value, num_envs=_NUM_ENVS.value,
                                    unroll_length=_UNROLL.value)
    hyper = ac.lpg_hyper(_DISCOUNT.value, _LEARNING_RATE.value, _Y_COST.value)
    run = jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, 0, 0)))
    _, snaps, visits = run(layouts, logits, (meta_params, meta_params), (hyper, hyper),
                           (states0, states1), run_keys)
    y0, y1 = np.asarray(snaps[0]["y"]), np.asarray(snaps[1]["y"])  # [L, N, S, m]
    visits = np.asarray(visits)

    updates = np.arange(y0.shape[1]) * _SNAPSHOT_EVERY.value
    seen = [np.flatnonzero(v >= _MIN_VISITS.value) for v in visits]
    kl = np.array([[ac.mean_kl(y0[l, n], y1[l, n], seen[l]) for l in range(y0.shape[0])]
                   for n in range(y0.shape[1])])  # [N, L], every visited state counts once
    kl_weighted = np.array([[ac.mean_kl(y0[l, n], y1[l, n], seen[l], visits[l]) for l in range(y0.shape[0])]
                            for n in range(y0.shape[1])])  # weighted by how often the policy is there
    plot(os.path.join(_WORKDIR.value, "y_convergence.png"), updates, kl, kl_weighted, y0[0], y1[0],
         (env.height, env.width), ac.all_present_states(env))
    with open(os.path.join(_WORKDIR.value, "y_convergence.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["update", "mean_kl", "mean_kl_visit_weighted"] + [f"kl_layout{l}" for l in range(kl.shape[1])])
        for u, row, weighted in zip(updates, kl, kl_weighted):
            writer.writerow([int(u), f"{row.mean():.6g}", f"{weighted.mean():.6g}"] + [f"{v:.6g}" for v in row])
    summary = dict(
        task=_TASK.value, seed=_SEED.value, rule=_RULE.value, rule_provenance=provenance,
        updates=_UPDATES.value, num_layouts=_NUM_LAYOUTS.value, init_scale=_INIT_SCALE.value,
        discount=_DISCOUNT.value, epsilon=_EPSILON.value, learning_rate=_LEARNING_RATE.value,
        y_cost=_Y_COST.value, states_per_layout=[int(np.sum(v >= _MIN_VISITS.value)) for v in visits],
        kl_initial_mean=float(kl[0].mean()), kl_final_mean=float(kl[-1].mean()),
        kl_final_per_layout=kl[-1].round(6).tolist(),
        kl_visit_weighted_initial_mean=float(kl_weighted[0].mean()),
        kl_visit_weighted_final_mean=float(kl_weighted[-1].mean()), seconds=round(time.time() - start, 1))
    with open(os.path.join(_WORKDIR.value, "y_convergence.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{_TASK.value}: {_NUM_LAYOUTS.value} held-out layouts, {_UPDATES.value} updates, "
          f"y logits init N(0, {_INIT_SCALE.value}²)")
    shown = sorted(set(range(0, len(updates), max(1, len(updates) // 8))) | {len(updates) - 1})
    for n in shown:
        print(f"  update {int(updates[n]):6d}: KL(y0‖y1) mean {kl[n].mean():.5f} (layouts "
              f"{kl[n].min():.5f}..{kl[n].max():.5f}), visit-weighted {kl_weighted[n].mean():.5f}")
    print(f"KL {summary['kl_initial_mean']:.4f} → {summary['kl_final_mean']:.5f} "
          f"({summary['kl_final_mean'] / summary['kl_initial_mean']:.2%} of initial); visit-weighted "
          f"{summary['kl_visit_weighted_initial_mean']:.4f} → {summary['kl_visit_weighted_final_mean']:.5f}")
    print(f"wrote {_WORKDIR.value}/y_convergence.png, .csv, .json ({summary['seconds']} s)")


if __name__ == "__main__":
    app.run(main)
