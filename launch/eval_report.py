"""Evaluation reports: restore a rule, train fresh agents with it and with A2C, write results.

No flags here (launch/evaluate.py parses them). See launch/evaluate.py for the outputs.
"""

from __future__ import annotations

import csv
import os
import time
import warnings

from absl import logging
import jax
import ml_collections
import numpy as np

import envs
from experiments import paper_results
from launch import build
from launch import checkpoints
from lpg import evaluation
from lpg import types
from lpg.rules import a2c


def rule_from_checkpoint(checkpoint_dir: str, step: int | None = None):
    """(rule, meta_params, provenance) from a launch.train checkpoint (restores only what it needs)."""
    if not os.path.isdir(checkpoint_dir):
        raise checkpoints.CheckpointError(f"checkpoint directory {checkpoint_dir} does not exist")
    ckpt = checkpoints.Checkpointer(checkpoint_dir)
    try:
        saved = ml_collections.ConfigDict(ckpt.restore_config(step))
        trainer = build.make_trainer(saved)
        abstract = jax.eval_shape(trainer.init, jax.random.key(0))
        state, _ = ckpt.restore(abstract, step)
    finally:
        ckpt.close()
    provenance = {"checkpoint": os.path.abspath(checkpoint_dir), "step": int(state.step)}
    return trainer.rule, state.meta_params, provenance


def stderr(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def plot_curves(path: str, task: str, results: dict[str, evaluation.Curves]) -> None:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curves in results.items():
        ys = curves.returns[curves.best]  # [S, U]
        with warnings.catch_warnings():  # all-NaN columns before the first finished episode
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(ys, axis=0)
            err = np.nanstd(ys, axis=0) / np.sqrt(np.maximum(np.sum(np.isfinite(ys), axis=0), 1))
        label = f"{name} (α_lr={curves.learning_rates[curves.best]:g})"
        ax.plot(curves.env_steps, mean, label=label)
        ax.fill_between(curves.env_steps, mean - err, mean + err, alpha=0.25)
    ax.set_title(task)
    ax.set_xlabel("environment steps per agent")
    ax.set_ylabel("episode return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_rule_on_tasks(rule, meta_params, *, tasks, seeds, env_steps, num_envs, workdir,
                           discount=0.99, y_cost=0.5, a2c_entropy_cost=0.01, seed=0,
                           provenance=None) -> dict:
    """Runs the LPG-vs-A2C comparison on `tasks`; writes CSV, plots and results.md to `workdir`."""
    task_names = build.parse_tasks(tasks)
    if seeds <= 0 or num_envs <= 0 or env_steps < 0:
        raise ValueError(f"seeds and num_envs must be > 0 and env_steps >= 0, got {seeds}, {num_envs}, {env_steps}")
    os.makedirs(workdir, exist_ok=True)
    unroll_length = 20
    key = jax.random.key(seed)
    summary = {}
    rows = []
    for name in task_names:
        task = envs.make(name)
        steps = env_steps or task.lifetime_steps
        num_updates = max(1, steps // (num_envs * unroll_length))
        rules = {
            "LPG": (rule, meta_params, types.HyperParams(
                learning_rate=0.0, discount=discount, y_cost=y_cost, entropy_cost=0.0,
                value_cost=0.0, td_lambda=0.95)),
            "A2C": (a2c.A2C(), {}, types.HyperParams(
                learning_rate=0.0, discount=discount, y_cost=0.0, entropy_cost=a2c_entropy_cost,
                value_cost=0.5, td_lambda=0.95)),
        }
        results = {}
        for rule_name, (the_rule, params, hyper) in rules.items():
            start = time.perf_counter()
            key, sub = jax.random.split(key)
            curves = evaluation.evaluate_rule(
                task, the_rule, params, hyper, learning_rates=task.learning_rates, seeds=seeds,
                num_updates=num_updates, num_envs=num_envs, unroll_length=unroll_length, key=sub,
                y_dim=getattr(the_rule, "y_dim", 30))
            results[rule_name] = curves
            logging.info("%s %s: best α_lr=%g final %.3f (%.0fs)", name, rule_name,
                         curves.learning_rates[curves.best], np.nanmean(curves.best_final),
                         time.perf_counter() - start)
            for g, lr in enumerate(curves.learning_rates):
                for s in range(seeds):
                    rows.append((name, rule_name, float(lr), s, float(curves.final[g, s])))
        plot_curves(os.path.join(workdir, name.replace("/", "_") + ".png"), name, results)
        summary[name] = {
            rule_name: (float(np.nanmean(c.best_final)), stderr(c.best_final), float(c.learning_rates[c.best]))
            for rule_name, c in results.items()}
        summary[name]["env_steps"] = num_updates * num_envs * unroll_length

    with open(os.path.join(workdir, "eval_final_returns.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "rule", "learning_rate", "seed", "final_return"])
        writer.writerows(rows)
    lines = [
        f"Final return (mean ± stderr over {seeds} seeds, best α_lr of the task's grid for each rule; "
        f"final = mean of the last 10% of the curve). Provenance: {provenance or {}}",
        "",
        "| task | env steps | A2C | LPG | LPG ≥ A2C | paper A2C | paper LPG |",
        "|---|---|---|---|---|---|---|",
    ]
    wins = 0
    for name, res in summary.items():
        a_mean, a_err, a_lr = res["A2C"]
        l_mean, l_err, l_lr = res["LPG"]
        paper = paper_results.FIG3_FINAL_RETURN.get(name, (float("nan"),) * 3)
        win = l_mean >= a_mean
        wins += int(win)
        lines.append(f"| {name} | {res['env_steps']:,} | {a_mean:.3f} ± {a_err:.3f} (α={a_lr:g}) | "
                     f"{l_mean:.3f} ± {l_err:.3f} (α={l_lr:g}) | {'yes' if win else 'no'} | "
                     f"{paper[0]:g} | {paper[2]:g} |")
    lines += ["", f"LPG ≥ A2C on {wins} of {len(summary)} tasks."]
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def evaluate_trained_rule(rule_dir: str, config, workdir: str) -> dict:
    """Used by `launch.train --evaluate` on the rule it just exported (`<workdir>/rule`, the final
    η; reading it needs no collective checkpoint restore, so process 0 of a multi-host run can do
    it alone). The config's eval section decides tasks and budgets."""
    rule, meta_params, provenance = checkpoints.load_rule(
        rule_dir, lambda c: build.make_rule(ml_collections.ConfigDict(c)))
    return evaluate_rule_on_tasks(
        rule, meta_params, tasks=config.eval.tasks, seeds=int(config.eval.seeds),
        env_steps=int(config.eval.env_steps), num_envs=int(config.eval.num_envs),
        workdir=os.path.join(workdir, "eval"), y_cost=float(config.eval.y_cost),
        provenance=provenance)
