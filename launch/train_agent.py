"""Train A2C agents on registered tasks: learning curves (CSV + PNG) and a results table.

    python -m launch.train_agent --config experiments/configs/a2c.py \
        --config.tasks=tabular/dense --config.env_steps=1000000 --workdir runs/a2c

For each task, `num_seeds` agents per learning rate (the task's α_lr grid unless
--config.hyper.learning_rate is set) train side by side; the best learning rate by mean final
return (mean of the last 10% of the curve) is reported. Writes <workdir>/<task>.csv (per-update
mean return per learning rate), <workdir>/<task>.png, and <workdir>/results.md with the paper's
A2C values (Fig. 3) alongside.
"""

from __future__ import annotations

import csv
import os
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import tqdm

import envs
from experiments import paper_results
from launch import build
from launch import eval_report
from launch import train_loop
from lpg import evaluation
from lpg import types
from lpg.rules import a2c

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/a2c.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")


def _task_names(spec: str) -> tuple[str, ...]:
    return tuple(envs.names()) if spec.strip() == "all" else build.parse_tasks(spec)


def _validate(config) -> None:
    for name in ("num_seeds", "num_envs", "unroll_length", "updates_per_chunk"):
        if not config[name] > 0:
            raise ValueError(f"config.{name} must be > 0, got {config[name]!r}")
    for name in ("env_steps", "lifetime_fraction", "lifetimes_per_chunk"):
        if config[name] < 0:
            raise ValueError(f"config.{name} must be >= 0, got {config[name]!r}")
    for name in ("discount", "td_lambda"):
        if not 0 <= config.hyper[name] <= 1:
            raise ValueError(f"config.hyper.{name} must be in [0, 1], got {config.hyper[name]!r}")
    if config.hyper.learning_rate < 0:
        raise ValueError(f"config.hyper.learning_rate must be > 0 (or 0 to sweep the task's grid), "
                         f"got {config.hyper.learning_rate}")


def run(config, workdir: str) -> dict:
    tasks = _task_names(config.tasks)
    _validate(config)
    os.makedirs(workdir, exist_ok=True)
    hyper = types.HyperParams(
        learning_rate=0.0, discount=config.hyper.discount, y_cost=0.0,
        entropy_cost=config.hyper.entropy_cost, value_cost=config.hyper.value_cost,
        td_lambda=config.hyper.td_lambda)
    key = jax.random.key(int(config.seed))
    summary = {}
    for name in tasks:
        task = envs.make(name)
        if config.lifetime_fraction > 0:
            steps = int(task.lifetime_steps * config.lifetime_fraction)
        else:
            steps = int(config.env_steps) or task.lifetime_steps
        steps_per_update = config.num_envs * config.unroll_length
        num_updates = max(1, steps // steps_per_update)
        grid = (config.hyper.learning_rate,) if config.hyper.learning_rate > 0 else task.learning_rates
        key, sub = jax.random.split(key)
        start = time.perf_counter()
        with tqdm.tqdm(total=num_updates, desc=name, unit="upd") as bar:
            curves = evaluation.evaluate_rule(
                task, a2c.A2C(), {}, hyper, learning_rates=grid, seeds=int(config.num_seeds),
                num_updates=num_updates, num_envs=int(config.num_envs),
                unroll_length=int(config.unroll_length), key=sub,
                updates_per_chunk=int(config.updates_per_chunk),
                lifetimes_per_chunk=int(config.lifetimes_per_chunk) or None, progress=bar.update)
        seconds = time.perf_counter() - start
        total_steps = num_updates * steps_per_update * len(grid) * int(config.num_seeds)
        fname = name.replace("/", "_")
        with open(os.path.join(workdir, fname + ".csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["env_steps"] + [f"lr={lr:g}" for lr in curves.learning_rates])
            with np.errstate(all="ignore"):
                means = np.nanmean(curves.returns, axis=1)  # [G, U]
            for u, steps_u in enumerate(curves.env_steps):
                writer.writerow([int(steps_u)] + [f"{m:.4f}" for m in means[:, u]])
        eval_report.plot_curves(os.path.join(workdir, fname + ".png"), name, {"A2C": curves})
        best = curves.best_final
        summary[name] = dict(
            mean=float(np.nanmean(best)), stderr=eval_report.stderr(best),
            lr=float(curves.learning_rates[curves.best]), env_steps=num_updates * steps_per_update,
            lifetime=task.lifetime_steps, seconds=seconds, env_steps_per_s=total_steps / seconds,
            per_lr={f"{lr:g}": float(np.nanmean(curves.final[g])) for g, lr in enumerate(curves.learning_rates)})
        tqdm.tqdm.write(f"{name}: {summary[name]['mean']:.3f} ± {summary[name]['stderr']:.3f} "
                        f"(α_lr={summary[name]['lr']:g}, {seconds:.0f}s, {summary[name]['env_steps_per_s']:,.0f} steps/s)")
    lines = [
        f"A2C final return (mean ± stderr over {config.num_seeds} seeds at the best α_lr; final = mean "
        f"of the last 10% of updates; γ={config.hyper.discount}, λ={config.hyper.td_lambda}, "
        f"entropy {config.hyper.entropy_cost}, {config.num_envs} envs × T={config.unroll_length}).",
        "",
        "| task | env steps (of lifetime) | A2C here | best α_lr | mean final per α_lr | paper A2C | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        paper = paper_results.FIG3_FINAL_RETURN.get(name, (float("nan"),))[0]
        per_lr = ", ".join(f"{lr}: {v:.2f}" for lr, v in r["per_lr"].items())
        lines.append(f"| {name} | {r['env_steps']:,} ({r['env_steps'] / r['lifetime']:.0%}) | "
                     f"{r['mean']:.3f} ± {r['stderr']:.3f} | {r['lr']:g} | {per_lr} | {paper:g} | {r['seconds']:.0f} |")
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    train_loop.enable_compilation_cache(os.path.expanduser("~/.cache/lpg/jax_compilation_cache"))
    run(_CONFIG.value, _WORKDIR.value)


def cli():
    app.run(main)


if __name__ == "__main__":
    cli()
