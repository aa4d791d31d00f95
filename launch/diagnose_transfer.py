"""Why does a learned rule not transfer? Train with it on a task under controlled changes.

    python -m launch.diagnose_transfer --rule experiments/pretrained/lpg_tabular \
        --task gymnax/CartPole-v1 --reward_scales 1,0.1,0.01 --learning_rates 0.0025,0.001 \
        --seeds 100-103 --env_steps 500000 --workdir runs/diagnose_cartpole

Every (reward scale, α_lr) pair trains the same lifetimes (seed i: the protocol's environment,
θ0 and keys, `lpg.evaluation.lifetime_keys`), so differences between rows come from the change
alone. Besides the return curve (divided by the reward scale, so rows compare on the task's own
scale) it keeps the per-update policy entropy, gradient norm and the rule's own logs (LPG: the
mean |π̂| and the spread of π̂), which show *how* a lifetime fails (e.g. π̂ growing until the
policy collapses). This is a diagnosis tool, not the protocol: nothing is selected here, and its
numbers are not comparisons between rules (launch/evaluate.py makes those).

Writes in <workdir>: summary.md (final and peak return with bootstrap CIs, final entropy and
|π̂|), curves.csv (every stat per update, mean over seeds), diagnosis.png (one panel per stat).
"""

from __future__ import annotations

import csv
import os

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

import envs
from envs.wrappers import transforms
from launch import checkpoints
from launch import eval_report
from lpg import evaluation
from lpg import training

_RULE = flags.DEFINE_string("rule", None, "Directory of a saved rule (meta_params.msgpack + rule.json).")
_TASK = flags.DEFINE_string("task", "gymnax/CartPole-v1", "Registered task name.")
_REWARD_SCALES = flags.DEFINE_list("reward_scales", ["1"], "Reward multipliers to try (> 0).")
_LEARNING_RATES = flags.DEFINE_list("learning_rates", [], "α_lr values (empty: the task's grid).")
_Y_COST = flags.DEFINE_float("y_cost", 0.5, "α_y (LPG's y-loss weight) for every run.")
_SEEDS = flags.DEFINE_string("seeds", "100-103", "Seed ids (protocol lifetimes), e.g. '100-103'.")
_ENV_STEPS = flags.DEFINE_integer("env_steps", 500_000, "Environment steps per lifetime.")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 16, "Parallel environments per lifetime.")
_DISCOUNT = flags.DEFINE_float("discount", 0.99, "γ.")
_STATS = flags.DEFINE_list("stats", ["entropy", "grad_norm", "pi_hat_abs", "pi_hat_std"],
                           "Per-update stats of the learner step to record besides the return.")
_EQ7_BASELINE = flags.DEFINE_bool("eq7_baseline", False, "LPG only: Eq. 7's baseline f_θ(s) at meta-test.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_CURVE_WINDOW = 10  # updates averaged into one point of the return curve (as launch/evaluate.py)


def _floats(flag) -> list[float]:
    try:
        values = [float(v) for v in flag.value]
    except ValueError:
        raise app.UsageError(f"--{flag.name}={','.join(flag.value)}: not a list of numbers") from None
    if any(not v > 0 for v in values):
        raise app.UsageError(f"--{flag.name}={','.join(flag.value)}: every value must be > 0")
    return values


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _RULE.value or not os.path.isdir(_RULE.value):
        raise app.UsageError(f"--rule={_RULE.value}: give the directory of a saved rule")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    if _ENV_STEPS.value <= 0 or _NUM_ENVS.value <= 0:
        raise app.UsageError(f"--env_steps={_ENV_STEPS.value}, --num_envs={_NUM_ENVS.value}: both must be > 0")
    scales, learning_rates = _floats(_REWARD_SCALES), _floats(_LEARNING_RATES)
    try:
        seeds = eval_report.parse_seeds(_SEEDS.value, name="--seeds", count_start=100)
        base_task = envs.make(_TASK.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    rule, meta_params, _ = checkpoints.load_rule(_RULE.value)
    if _EQ7_BASELINE.value:
        rule = eval_report.with_eq7_baseline(rule)
    budget = evaluation.Budget.from_env_steps(_ENV_STEPS.value, _NUM_ENVS.value)
    os.makedirs(_WORKDIR.value, exist_ok=True)

    rows, curves = [], {}
    for scale in scales:
        task = transforms.scale_rewards(base_task, scale)
        candidates = {}
        for lr in learning_rates or task.learning_rates:
            candidates.update(eval_report.lpg_candidates(
                task, rule, discount=_DISCOUNT.value, learning_rate=lr, y_cost=_Y_COST.value))
        runner = evaluation.LifetimeRunner(task, rule, budget, lifetimes_per_call=len(seeds),
                                           extra_stats=tuple(_STATS.value))
        stats = runner.stats(meta_params, list(candidates.values()), seeds)  # each [C, S, U]
        with jax.debug_nans(False):
            returns = np.asarray(training.mean_episode_return(stats, window=_CURVE_WINDOW)) / scale
        for c, setting in enumerate(candidates):
            label = f"r×{scale:g}, {setting}"
            final = evaluation.bootstrap_mean(evaluation.final_returns(returns[c]))
            peak = evaluation.bootstrap_mean(np.nanmax(returns[c], axis=-1))
            tail = max(1, budget.num_updates // 10)
            row = {"scale": scale, "setting": setting, "final": str(final), "peak": str(peak)}
            row.update({name: f"{np.nanmean(stats[name][c][:, -tail:]):.4g}" for name in _STATS.value})
            rows.append(row)
            curves[label] = {"return": np.nanmean(returns[c], axis=0),
                             **{name: stats[name][c].mean(axis=0) for name in _STATS.value}}
            logging.info("%s: final %s, peak %s", label, final, peak)
    _write(rows, curves, budget)


def _write(rows, curves, budget) -> None:
    workdir = _WORKDIR.value
    stat_names = ["return", *_STATS.value]
    header = ["reward scale", "setting", "final return (÷ scale)", "peak return",
              *[f"{name} (last 10%)" for name in _STATS.value]]
    lines = [f"# Transfer diagnosis: {_RULE.value} on {_TASK.value}", "",
             f"{budget.env_steps:,} env steps per lifetime, {budget.num_envs} envs, seeds {_SEEDS.value}; "
             f"mean [95% bootstrap CI] over seeds. Not a protocol comparison (nothing is selected).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([f"{row['scale']:g}", row["setting"], row["final"], row["peak"],
                                         *[row[name] for name in _STATS.value]]) + " |")
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(workdir, "curves.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "env_steps", *stat_names])
        for label, series in curves.items():
            for u, steps in enumerate(budget.env_steps_per_point):
                writer.writerow([label, int(steps), *[f"{series[n][u]:.6g}" for n in stat_names]])

    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, axes = plt.subplots(1, len(stat_names), figsize=(4 * len(stat_names), 3.5))
    for ax, name in zip(axes, stat_names):
        for label, series in curves.items():
            ax.plot(budget.env_steps_per_point, series[name], label=label, lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("env steps")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "diagnosis.png"), dpi=90)
    plt.close(fig)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
