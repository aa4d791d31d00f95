"""Fig. 5 of Oh et al. 2020: how much of the true values at several discounts y holds, vs TD(λ).

    python -m experiments.analysis_y_regression --workdir runs/analysis/y_regression

1. Policy. On each of --num_layouts held-out layouts of --task (experiments/analysis_common.py),
   a tabular agent is trained with the rule for --train_updates updates (lpg.training; α_lr,
   α_y as given); its final policy is then frozen.
2. Policy evaluation. For --updates more updates, on the same rollouts of the frozen policy
   (64 × 20 steps each), two fresh tables learn in parallel (analysis_common.make_policy_evaluation):
   an LPG agent's y (all-zero logits, y uniform) updated by the rule with γ = --discount, and an
   A2C agent's value table updated by TD(λ) (the A2C rule's λ-return targets, γ = --discount,
   λ = --td_lambda; its SGD step is α_lr · c_V). Both are snapshotted every --snapshot_every updates.
3. True values. V^π of the frozen policy at γ ∈ {0.995, 0.99, 0.95, 0.9}, exactly, by solving
   the layout's MDP (analysis_common.grid_mdp / evaluate_policy).
4. Regression. On the states visited ≥ --min_visits times, per snapshot and per γ, a one-hidden-layer
   MLP g: y(s) ∈ R^m → V^π_γ(s) and h: V_TD(s) ∈ R → V^π_γ(s) are fitted on the first half of the
   layouts and scored (R², MSE) on the other half: held-out grid worlds, as in the paper.
   A third predictor, the exact V^π at γ = --discount, is what a tabular TD(λ) table converges
   to: the ceiling of the TD(λ) row (whatever its step size and number of updates), so y is also
   compared with a converged TD(λ), not only with the table after --updates updates.

Writes y_regression.png (test MSE over the policy-evaluation updates, one panel per γ, like Fig. 5),
y_regression.csv (every snapshot × γ × predictor) and y_regression.json (the final table).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import analysis_common as ac
from lpg import training
from lpg.rules import a2c

DISCOUNTS = (0.995, 0.99, 0.95, 0.9)
TD_LIMIT = "TD(λ) converged (exact V^π at γ̄)"

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_RULE = flags.DEFINE_string("rule", ac.DEFAULT_RULE, "Directory of the saved LPG rule.")
_TASK = flags.DEFINE_string("task", "tabular/dense", "A tabular grid-world task.")
_UPDATES = flags.DEFINE_integer("updates", 400, "Policy-evaluation updates (policy frozen).")
_TRAIN_UPDATES = flags.DEFINE_integer("train_updates", 200, "Updates training the policy with the rule.")
_SEED = flags.DEFINE_integer("seed", 0, "Picks the held-out layouts and all keys.")
_NUM_LAYOUTS = flags.DEFINE_integer("num_layouts", 8, "Held-out layouts; half fit, half test.")
_SNAPSHOT_EVERY = flags.DEFINE_integer("snapshot_every", 50, "Updates between regressions.")
_DISCOUNT = flags.DEFINE_float("discount", 0.995, "γ of the rule and of TD(λ) (paper: 0.995).")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 80.0, "α_lr (SGD, tabular grid: 20/40/80).")
_Y_COST = flags.DEFINE_float("y_cost", 1.0, "α_y, weight of KL(y‖ŷ).")
_VALUE_COST = flags.DEFINE_float("value_cost", 0.1, "c_V of TD(λ): its SGD step is α_lr · c_V.")
_TD_LAMBDA = flags.DEFINE_float("td_lambda", 0.95, "λ of TD(λ).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 64, "Parallel environments per update.")
_UNROLL = flags.DEFINE_integer("unroll_length", 20, "Steps per environment per update.")
_MIN_VISITS = flags.DEFINE_integer("min_visits", ac.MIN_VISITS, "States visited fewer times during "
                                   "policy evaluation are left out of the numbers.")
_MLP_HIDDEN = flags.DEFINE_integer("mlp_hidden", 32, "Hidden units of the regression MLPs.")
_MLP_STEPS = flags.DEFINE_integer("mlp_steps", 2000, "Full-batch Adam steps per regression.")


@functools.partial(jax.jit, static_argnames=("hidden", "steps"))
def _fit_mlps(x_train, targets, x_test, keys, *, hidden, steps, learning_rate=3e-3):
    """One MLP per column of `targets` [N, G] (vmapped), fitted on x_train; predictions [M, G]."""

    def one(target, key):
        k1, k2 = jax.random.split(key)
        dim = x_train.shape[1]
        params = dict(w1=jax.random.normal(k1, (dim, hidden)) / np.sqrt(dim), b1=jnp.zeros(hidden),
                      w2=jax.random.normal(k2, (hidden,)) / np.sqrt(hidden), b2=jnp.zeros(()))
        apply = lambda p, x: jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        optimiser = optax.adam(learning_rate)

        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(lambda p: jnp.mean((apply(p, x_train) - target) ** 2))(params)
            updates, opt_state = optimiser.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)
        return apply(params, x_test)

    return jax.vmap(one, in_axes=(1, 0), out_axes=1)(targets, keys)


def fit_predict(x_train, t_train, x_test, key, hidden, steps):
    """Fits one MLP x → t per column of t_train ([N, G]); returns test predictions [M, G].

    One hidden ReLU layer, full-batch Adam on the squared error; inputs and targets standardised
    with the training set's statistics (the prediction is mapped back to the target's units).
    """
    x_mean, x_std = x_train.mean(0), x_train.std(0) + 1e-6
    t_mean, t_std = t_train.mean(0), t_train.std(0) + 1e-6
    x_train, x_test = (x_train - x_mean) / x_std, (x_test - x_mean) / x_std
    targets = (t_train - t_mean) / t_std
    keys = jax.random.split(key, targets.shape[1])
    predictions = _fit_mlps(jnp.asarray(x_train, jnp.float32), jnp.asarray(targets, jnp.float32),
                            jnp.asarray(x_test, jnp.float32), keys, hidden=hidden, steps=steps)
    return np.asarray(predictions, np.float64) * t_std + t_mean


def scores(truth, prediction):
    """(R², MSE) per column ([M, G] each)."""
    mse = np.mean((prediction - truth) ** 2, axis=0)
    return 1.0 - mse / np.var(truth, axis=0), mse


def masked_policy(logits: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
    """π(·|s) the agent acts with: softmax of the logits over the valid actions ([S, A])."""
    return ac.softmax(np.where(action_mask[None], logits.astype(np.float64), -np.inf))


def plot(path, rows):
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    fig, axes = plt.subplots(1, len(DISCOUNTS), figsize=(3.4 * len(DISCOUNTS), 3.0))
    for ax, gamma in zip(axes, DISCOUNTS):
        for predictor, color in (("y (LPG)", "tab:blue"), ("TD(λ) value", "tab:gray")):
            sel = [r for r in rows if r["gamma"] == gamma and r["predictor"] == predictor]
            ax.plot([r["update"] for r in sel], [r["mse"] for r in sel], "o-", color=color, label=predictor)
        limit = [r["mse"] for r in rows if r["gamma"] == gamma and r["predictor"] == TD_LIMIT]
        # floored: on a log axis, an exact fit (MSE ≈ 0 at γ = γ̄) would not be drawn
        ax.axhline(max(limit[0], 1e-6), color="tab:gray", ls="--", label=TD_LIMIT)
        ax.set_yscale("log")
        ax.set_title(f"true value at γ = {gamma}", fontsize=9)
        ax.set_xlabel("policy-evaluation updates")
    axes[0].set_ylabel("held-out MSE of the regression")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    start = time.time()
    if _NUM_LAYOUTS.value < 2:
        raise ValueError(f"--num_layouts must be at least 2 (half fit, half test), got {_NUM_LAYOUTS.value}")
    rule, meta_params, provenance, task = ac.prepare(_WORKDIR.value, _RULE.value, _TASK.value)
    env = task.env
    num_layouts = _NUM_LAYOUTS.value
    keys = ac.held_out_keys(_SEED.value, num_layouts)
    lifetime_keys, train_keys, eval_keys = (jnp.stack(k) for k in zip(*(jax.random.split(k, 3) for k in keys)))

    # 1. Train a policy with the rule on every held-out layout.
    lpg_agent = training.build_agent(task, rule.output_spec)
    lpg_hyper = ac.lpg_hyper(_DISCOUNT.value, _LEARNING_RATE.value, _Y_COST.value)

    @jax.jit
    def train(meta_params):
        states = training.init_lifetimes_from_keys(task, lpg_agent, lifetime_keys, _NUM_ENVS.value, rule=rule)
        return training.continue_training(task, rule, lpg_agent, meta_params, lpg_hyper, states,
                                          keys=train_keys, num_updates=_TRAIN_UPDATES.value,
                                          unroll_length=_UNROLL.value)

    trained, stats = train(meta_params)
    curve = np.asarray(training.mean_episode_return(stats, window=10))  # [L, U]
    final_return = float(np.nanmean(curve[:, -1]))
    layouts = trained.env_params
    logits = trained.agent.params["params"]["logits"]  # [L, S, A], the frozen policies

    # 2. Policy evaluation of the frozen policies: y by the rule, V by TD(λ), same rollouts.
    td_rule = a2c.A2C()
    learners = [ac.Learner(rule, lpg_agent), ac.Learner(td_rule, training.build_agent(task, td_rule.output_spec))]
    td_hyper = ac.td_hyper(_DISCOUNT.value, _LEARNING_RATE.value, _VALUE_COST.value, _TD_LAMBDA.value)

    def init_states(key, layout_logits):
        return tuple(ac.init_learner_state(l, jax.random.fold_in(key, i), layout_logits)
                     for i, l in enumerate(learners))

    states = jax.vmap(init_states)(eval_keys, logits)
    run = ac.make_policy_evaluation(env, learners, num_updates=_UPDATES.value,
                                    snapshot_every=_SNAPSHOT_EVERY.value, num_envs=_NUM_ENVS.value,
                                    unroll_length=_UNROLL.value)
    run = jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, 0, 0)))
    _, snaps, visits = run(layouts, logits, (meta_params, {}), (lpg_hyper, td_hyper), states,
                           jax.vmap(lambda k: jax.random.fold_in(k, 9))(eval_keys))
    y_logits, td_values = np.asarray(snaps[0]["y"]), np.asarray(snaps[1]["value"])  # [L, N, S, (m)]
    visits = np.asarray(visits)

    # 3. Exact values of each frozen policy; 4. regression, fit on half of the layouts.
    logits = np.asarray(logits)
    seen, truth, td_limit = [], [], []
    gammas = DISCOUNTS + (() if _DISCOUNT.value in DISCOUNTS else (_DISCOUNT.value,))
    for i in range(num_layouts):
        mdp = ac.grid_mdp(env, ac.index_tree(layouts, i))
        values = ac.evaluate_policy(mdp, masked_policy(logits[i], mdp.action_mask), gammas)  # [G(+1), S]
        seen.append(np.flatnonzero(visits[i] >= _MIN_VISITS.value))
        truth.append(values[:len(DISCOUNTS), seen[i]].T)  # [n_i, G]
        # TD(λ)'s fixed point on-policy with a table: V^π at its own γ, whatever λ.
        td_limit.append(values[gammas.index(_DISCOUNT.value), seen[i], None])  # [n_i, 1]
    fit_layouts = range(num_layouts // 2)
    test_layouts = range(num_layouts // 2, num_layouts)
    stack = lambda per_layout, which: np.concatenate([per_layout[i] for i in which])
    truth_fit, truth_test = stack(truth, fit_layouts), stack(truth, test_layouts)
    if not truth_fit.size or not truth_test.size:
        raise ValueError(f"no state was visited --min_visits={_MIN_VISITS.value} times on the fit or "
                         "test layouts: more --updates or a lower --min_visits")

    rows = []
    reg_key = jax.random.fold_in(keys[0], 123)
    prediction = fit_predict(stack(td_limit, fit_layouts), truth_fit, stack(td_limit, test_layouts),
                             reg_key, _MLP_HIDDEN.value, _MLP_STEPS.value)
    limit_rows = [dict(update=-1, gamma=g, predictor=TD_LIMIT, r2=float(r2), mse=float(mse))
                  for g, r2, mse in zip(DISCOUNTS, *scores(truth_test, prediction))]
    rows += limit_rows
    for n in range(y_logits.shape[1]):
        update = n * _SNAPSHOT_EVERY.value
        features = {
            "y (LPG)": [ac.softmax(y_logits[i, n][seen[i]].astype(np.float64)) for i in range(num_layouts)],
            "TD(λ) value": [td_values[i, n][seen[i], None] for i in range(num_layouts)],
        }
        for predictor, x in features.items():
            prediction = fit_predict(stack(x, fit_layouts), truth_fit, stack(x, test_layouts),
                                     reg_key, _MLP_HIDDEN.value, _MLP_STEPS.value)
            r2, mse = scores(truth_test, prediction)
            rows += [dict(update=update, gamma=g, predictor=predictor, r2=float(r2[j]), mse=float(mse[j]))
                     for j, g in enumerate(DISCOUNTS)]

    plot(os.path.join(_WORKDIR.value, "y_regression.png"), rows)
    with open(os.path.join(_WORKDIR.value, "y_regression.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    last = [r for r in rows if r["update"] == _UPDATES.value] + limit_rows
    summary = dict(
        task=_TASK.value, seed=_SEED.value, rule=_RULE.value, rule_provenance=provenance,
        train_updates=_TRAIN_UPDATES.value, updates=_UPDATES.value, num_layouts=num_layouts,
        discount=_DISCOUNT.value, learning_rate=_LEARNING_RATE.value, y_cost=_Y_COST.value,
        value_cost=_VALUE_COST.value, td_lambda=_TD_LAMBDA.value,
        trained_policy_final_return=final_return,
        states_fit=int(truth_fit.shape[0]), states_test=int(truth_test.shape[0]),
        value_std_test={str(g): float(s) for g, s in zip(DISCOUNTS, truth_test.std(0))},
        final=last, seconds=round(time.time() - start, 1))
    with open(os.path.join(_WORKDIR.value, "y_regression.json"), "w") as f:
        json.dump(summary, f, indent=1)

    print(f"{_TASK.value}: {num_layouts} held-out layouts; policy = LPG agent after {_TRAIN_UPDATES.value} "
          f"updates (final return {final_return:.2f}), then {_UPDATES.value} policy-evaluation updates")
    print(f"regression fit on {truth_fit.shape[0]} states of layouts {list(fit_layouts)}, "
          f"tested on {truth_test.shape[0]} states of layouts {list(test_layouts)}")
    print(f"{'γ':>6} | {'R² from y':>10} {'R² from TD':>10} {'R² TD limit':>11} | {'MSE from y':>10} "
          f"{'MSE from TD':>11} {'MSE TD limit':>12} | std V")
    for j, g in enumerate(DISCOUNTS):
        y_row, td_row, limit_row = (next(r for r in last if r["gamma"] == g and r["predictor"] == p)
                                    for p in ("y (LPG)", "TD(λ) value", TD_LIMIT))
        print(f"{g:>6} | {y_row['r2']:>10.3f} {td_row['r2']:>10.3f} {limit_row['r2']:>11.3f} | "
              f"{y_row['mse']:>10.4f} {td_row['mse']:>11.4f} {limit_row['mse']:>12.4f} | "
              f"{truth_test[:, j].std():.3f}")
    print(f"wrote {_WORKDIR.value}/y_regression.png, .csv, .json ({summary['seconds']} s)")


if __name__ == "__main__":
    app.run(main)
