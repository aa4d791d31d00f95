"""Tune and train a rule without meta-parameters (A2C, PPO, or MetaGrad, which learns its γ and λ
within each lifetime) on registered tasks under the shared protocol (lpg/evaluation.py).

    python -m launch.train_agent --config experiments/configs/a2c.py \
        --config.tasks=tabular/dense --config.env_steps=300000 --config.num_envs=32 \
        --config.selection_seeds=0-3 --config.report_seeds=100-107 --workdir runs/a2c
    python -m launch.train_agent --config experiments/configs/ppo.py \
        --config.tasks=gymnax/CartPole-v1 --config.env_steps=500000 --workdir runs/ppo_cartpole
    python -m launch.train_agent --config experiments/configs/metagrad.py:cpu --workdir runs/metagrad

config.rule is "a2c", "ppo" or "metagrad" (their own settings: config.ppo / config.metagrad, fixed
for the whole sweep).

For each task, every setting of the grid α_lr × value_cost × entropy_cost (config.sweep; α_lr
defaults to the task's grid), × γ if config.sweep.discounts is given (metagrad: the initial γ),
× the rule's own grids (`rule.hyper_grid`; metagrad: η's step size β) trains on the selection
seeds; the setting with the best mean final return (mean of the last 10% of the curve; settings
that diverge on any seed rank last) is then trained on the disjoint report seeds and reported
with a bootstrap CI. Writes in <workdir>:
  sweep.md, sweep.csv     every setting's mean final return on the selection seeds, per task;
  results.md              the selected setting per task, its report mean [95% CI], paper A2C;
  final_returns.csv       every (task, rule, setting, seed, role, final_return);
  <task>.csv, <task>.png  the selected setting's curve: mean and CI over report seeds;
  <task>_stats.csv        rules with `curve_stats` (metagrad: the learned γ, λ): each per update,
                          mean and CI over report seeds and every report seed's value;
  <rule>_tuned.py         the selected settings (a2c_tuned.py is ready to replace
                          experiments/configs/a2c_tuned.py, which every LPG comparison reads).
"""

from __future__ import annotations

import csv
import os
import shlex
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

import envs
from experiments import paper_results
from experiments.configs import a2c_tuned
from launch import build
from launch import eval_report
from launch import train_loop
from lpg import evaluation
from lpg import rules

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/a2c.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")


def _task_names(spec: str) -> tuple[str, ...]:
    """'all' is the paper's 15 training tasks (`envs.registry.PAPER_TASKS`)."""
    if spec.strip() == "all":
        return envs.registry.PAPER_TASKS
    return build.parse_tasks(spec)


def make_rule(config) -> rules.base.UpdateRule:
    """`eval_report.baseline_rule(config)`, checking that its minibatches divide config.num_envs."""
    rule = eval_report.baseline_rule(config)
    if config.num_envs % rule.num_minibatches:
        raise ValueError(f"config.num_envs={config.num_envs} must be a multiple of "
                         f"config.ppo.minibatches={rule.num_minibatches} (minibatches split the envs)")
    return rule


def validate(config) -> tuple[tuple[str, ...], evaluation.Protocol]:
    """(task names, protocol); raises ValueError naming the first bad config value and what is allowed."""
    for name in ("num_envs", "unroll_length", "updates_per_chunk"):
        if not config[name] > 0:
            raise ValueError(f"config.{name} must be > 0, got {config[name]!r}")
    for name in ("env_steps", "lifetime_fraction", "lifetimes_per_call", "lifetimes_per_chunk"):
        if config[name] < 0:
            raise ValueError(f"config.{name} must be >= 0, got {config[name]!r}")
    if not 0 < config.hyper.discount <= 1:
        raise ValueError(f"config.hyper.discount must be in (0, 1], got {config.hyper.discount!r}")
    if not 0 <= config.hyper.td_lambda <= 1:
        raise ValueError(f"config.hyper.td_lambda must be in [0, 1], got {config.hyper.td_lambda!r}")
    discounts = config.sweep.get("discounts", ())
    if not (isinstance(discounts, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in discounts)):
        raise ValueError("config.sweep.discounts must be a list of numbers in (0, 1] (empty: "
                         f"config.hyper.discount alone), got {discounts!r}")
    for name, empty_ok, positive in (("learning_rates", True, True), ("value_costs", False, False),
                                     ("entropy_costs", False, False)):
        values = config.sweep[name]
        ok = isinstance(values, (list, tuple)) and (empty_ok or len(values) > 0) and all(
            isinstance(v, (int, float)) and (v > 0 if positive else v >= 0) for v in values)
        if not ok:
            allowed = "> 0" if positive else ">= 0"
            empty = " (empty: the task's grid)" if empty_ok else ", non-empty"
            raise ValueError(f"config.sweep.{name} must be a list of numbers {allowed}{empty}, "
                             f"got {values!r}")
    make_rule(config)
    tasks = _task_names(config.tasks)
    protocol = eval_report.make_protocol(
        config.selection_seeds, config.report_seeds, base_seed=int(config.seed),
        selection_name="config.selection_seeds", report_name="config.report_seeds")
    return tasks, protocol


def _env_steps(config, task) -> int:
    if config.lifetime_fraction > 0:
        return max(1, int(task.lifetime_steps * config.lifetime_fraction))
    return int(config.env_steps) or task.lifetime_steps


def run(config, workdir: str, command: str = "") -> dict:
    """Sweeps and reports config.rule on config.tasks (module docstring); returns
    {task: {"result": Evaluation, "seconds": float, "lifetime": int, "env_steps": int}}."""
    tasks, protocol = validate(config)
    rule = make_rule(config)
    label = eval_report.BASELINE_LABELS[rule.KIND]
    os.makedirs(workdir, exist_ok=True)
    summary, rows = {}, []
    for name in tasks:
        task = envs.make(name)
        budget = evaluation.Budget.from_env_steps(_env_steps(config, task), int(config.num_envs),
                                                  int(config.unroll_length))
        candidates = eval_report.a2c_sweep(
            task, learning_rates=config.sweep.learning_rates, value_costs=config.sweep.value_costs,
            entropy_costs=config.sweep.entropy_costs, discount=config.hyper.discount,
            td_lambda=config.hyper.td_lambda, discounts=tuple(config.sweep.get("discounts", ())),
            rule_grid=rule.hyper_grid)
        start = time.perf_counter()
        result = eval_report.run_evaluation(
            task, rule, {}, candidates, protocol, budget, label=label,
            updates_per_chunk=int(config.updates_per_chunk),
            lifetimes_per_call=int(config.lifetimes_per_call) or None,
            lifetimes_per_chunk=int(config.lifetimes_per_chunk) or None,
            extra_stats=rule.curve_stats)
        seconds = time.perf_counter() - start
        summary[name] = dict(result=result, seconds=seconds, lifetime=task.lifetime_steps,
                             env_steps=budget.env_steps)
        rows += eval_report.final_return_rows(label, result)
        fname = name.replace("/", "_")
        write_curve_csv(os.path.join(workdir, fname + ".csv"), result)
        if result.report_stats:
            write_stats_csv(os.path.join(workdir, fname + "_stats.csv"), result)
            plot_stats(os.path.join(workdir, fname + "_stats.png"), name, result)
        eval_report.plot_curves(os.path.join(workdir, fname + ".png"), name, {label: result})
        lifetimes = evaluation.work(len(candidates), protocol, budget) / budget.num_updates
        print(f"{name}: chose {result.chosen}; report {result.summary()} "
              f"({seconds:.0f}s, {lifetimes * budget.env_steps / seconds:,.0f} env steps/s)", flush=True)
    eval_report.write_final_returns(os.path.join(workdir, "final_returns.csv"), rows)
    write_sweep(workdir, summary, protocol, label)
    lines = results_lines(config, summary, protocol, rule)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(workdir, f"{rule.KIND}_tuned.py"), "w") as f:
        f.write(tuned_config_text(config, summary, protocol, command, rule))
    print("\n".join(lines))
    return summary


def write_curve_csv(path: str, result: evaluation.Evaluation) -> None:
    """env_steps, mean, ci_low, ci_high of the chosen setting over the report seeds."""
    p = result.protocol
    band = evaluation.bootstrap_mean(result.report_curves, confidence=p.confidence, seed=p.bootstrap_seed,
                                     n_bootstrap=min(p.n_bootstrap, eval_report.BAND_BOOTSTRAP))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_steps", "mean", "ci_low", "ci_high"])
        for u, steps in enumerate(result.env_steps):
            writer.writerow([int(steps)] + [f"{x[u]:.4f}" for x in (band.mean, band.low, band.high)])


def write_stats_csv(path: str, result: evaluation.Evaluation) -> None:
    """update, env_steps, then per stat of `result.report_stats` (e.g. metagrad's discount,
    td_lambda): mean, ci_low, ci_high over the report seeds and one column per report seed."""
    p = result.protocol
    bands = {name: evaluation.bootstrap_mean(values, confidence=p.confidence, seed=p.bootstrap_seed,
                                             n_bootstrap=min(p.n_bootstrap, eval_report.BAND_BOOTSTRAP))
             for name, values in result.report_stats.items()}
    header = ["update", "env_steps"]
    for name in result.report_stats:
        header += [f"{name}_mean", f"{name}_ci_low", f"{name}_ci_high",
                   *[f"{name}_seed_{s}" for s in p.report_seeds]]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for u, steps in enumerate(result.env_steps):
            row = [u + 1, int(steps)]
            for name, values in result.report_stats.items():
                band = bands[name]
                row += [f"{x:.6g}" for x in (band.mean[u], band.low[u], band.high[u], *values[:, u])]
            writer.writerow(row)


def plot_stats(path: str, task: str, result: evaluation.Evaluation) -> None:
    """One panel per stat of `result.report_stats` (metagrad: γ, λ) over the lifetime: every
    report seed's trajectory (thin) and their mean."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    names = list(result.report_stats)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = np.asarray(result.report_stats[name])  # [report seeds, updates]
        ax.plot(result.env_steps, values.T, color="tab:blue", alpha=0.3, linewidth=0.8)
        ax.plot(result.env_steps, values.mean(axis=0), color="tab:blue", linewidth=2, label="mean")
        ax.set_title(f"{task}: {name} ({result.chosen})", fontsize=8)
        ax.set_xlabel("environment steps per agent")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


SWEEP_FIELDS = ("learning_rate", "value_cost", "entropy_cost", "discount", "td_lambda")


def _rule_fields(result: evaluation.Evaluation) -> tuple[str, ...]:
    """Names of the rule's own hyperparameters in the candidates (metagrad: meta_lr), or ()."""
    return tuple(result.candidate_hypers[0].rule)


def _candidate_hypers(result: evaluation.Evaluation) -> list[tuple[float, ...]]:
    """[C] (learning_rate, value_cost, entropy_cost, discount, td_lambda, *rule's own) of each
    candidate."""
    rule_fields = _rule_fields(result)
    return [tuple(float(getattr(h, f)) for f in SWEEP_FIELDS) + tuple(float(h.rule[f]) for f in rule_fields)
            for h in result.candidate_hypers]


def _row_fields(result: evaluation.Evaluation) -> list[int]:
    """Indices (into `_candidate_hypers`) of a sweep.md row's key: c_V, c_H, and any other field
    that varies across the candidates (metagrad: the initial γ, β)."""
    hypers = _candidate_hypers(result)
    return [1, 2, *[i for i in range(3, len(hypers[0])) if len({h[i] for h in hypers}) > 1]]


def write_sweep(workdir: str, summary: dict, protocol: evaluation.Protocol, label: str) -> None:
    """sweep.csv (one row per task and setting) and sweep.md (one α_lr × (c_V, c_H, other swept
    values) table per task)."""
    seeds = protocol.selection_seeds
    rule_fields = _rule_fields(next(iter(summary.values()))["result"]) if summary else ()
    with open(os.path.join(workdir, "sweep.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "setting", *SWEEP_FIELDS, *rule_fields, "selection_mean_final",
                         "diverged_seeds", "chosen", *[f"seed_{s}" for s in seeds]])
        for name, res in summary.items():
            result = res["result"]
            for c, (setting, mean) in enumerate(result.selection_table.items()):
                writer.writerow([name, setting, *_candidate_hypers(result)[c], f"{mean:.4f}",
                                 int(result.selection_diverged[c].sum()), int(setting == result.chosen),
                                 *[f"{x:.4f}" for x in result.selection_final[c]]])
    lines = [f"# {label} sweep: mean final return on selection seeds {list(seeds)}", "",
             "Rows c_V (value cost; tabular value step = α_lr · c_V) and c_H (entropy cost), columns "
             "α_lr; **bold**: selected; † diverged (non-finite loss) on that many seeds.", ""]
    for name, res in summary.items():
        result = res["result"]
        hypers = _candidate_hypers(result)
        symbols = [evaluation.SYMBOLS.get(f, f) for f in (*SWEEP_FIELDS, *_rule_fields(result))]
        keys = _row_fields(result)

        def row_of(h):
            return tuple(h[i] for i in keys)

        lrs = sorted({h[0] for h in hypers})
        rows = sorted({row_of(h) for h in hypers})
        cell = {}
        for c, (setting, mean) in enumerate(result.selection_table.items()):
            text = f"{mean:.3f}"
            if result.selection_diverged[c].any():
                text += f" †{int(result.selection_diverged[c].sum())}"
            cell[hypers[c][0], row_of(hypers[c])] = f"**{text}**" if setting == result.chosen else text
        lines += [f"## {name} ({res['env_steps']:,} env steps per lifetime)", "",
                  f"| {', '.join(symbols[i] for i in keys)} | "
                  + " | ".join(f"α_lr={lr:g}" for lr in lrs) + " |",
                  "|---|" + "---|" * len(lrs)]
        for row in rows:
            cells = " | ".join(cell.get((lr, row), "–") for lr in lrs)
            lines.append(f"| {', '.join(f'{v:g}' for v in row)} | {cells} |")
        lines.append("")
    with open(os.path.join(workdir, "sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _settings_text(rule) -> str:
    """" PPO settings: {...}." for a rule with static settings; "" for one without (A2C)."""
    config = rule.config()
    return f" {eval_report.BASELINE_LABELS[rule.KIND]} settings: {config}." if config else ""


def _discount_text(config) -> str:
    """"γ=0.99", or "γ ∈ (0.9, 0.99)" when config.sweep.discounts sweeps it."""
    discounts = tuple(config.sweep.get("discounts", ()))
    return f"γ ∈ {discounts}" if discounts else f"γ={config.hyper.discount}"


def results_lines(config, summary: dict, protocol: evaluation.Protocol, rule) -> list[str]:
    p = protocol
    label = eval_report.BASELINE_LABELS[rule.KIND]
    lines = [
        f"{label} final return on report seeds {list(p.report_seeds)}: mean [{p.confidence:.0%} bootstrap CI] "
        f"of the setting selected on seeds {list(p.selection_seeds)} (final = mean of the last "
        f"{p.final_fraction:.0%} of the curve; {_discount_text(config)}, λ={config.hyper.td_lambda}, "
        f"{config.num_envs} envs × T={config.unroll_length}).{_settings_text(rule)}",
        "",
        f"| task | env steps (of lifetime) | selected (α_lr, c_V, c_H) | {label} here | diverged report seeds "
        "| paper A2C | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        result = r["result"]
        paper = paper_results.FIG3_FINAL_RETURN.get(name, (float("nan"),))[0]
        steps = f"{r['env_steps']:,} ({r['env_steps'] / r['lifetime']:.1%})"
        lines.append(f"| {name} | {steps} | {result.chosen} | {result.summary()} | "
                     f"{int(result.report_diverged.sum())} | {paper:g} | {r['seconds']:.0f} |")
    stat_names = rule.curve_stats
    if stat_names:  # metagrad: where the learned γ and λ ended up (curves in <task>_stats.csv)
        lines += ["", f"{label}'s {', '.join(stat_names)} at the last update: mean [min, max] over "
                  "the report seeds.", "", "| task | " + " | ".join(stat_names) + " |",
                  "|---|" + "---|" * len(stat_names)]
        for name, r in summary.items():
            finals = [r["result"].report_stats[s][:, -1] for s in stat_names]
            lines.append(f"| {name} | " + " | ".join(
                f"{v.mean():.4f} [{v.min():.4f}, {v.max():.4f}]" for v in finals) + " |")
    return lines


def tuned_config_text(config, summary: dict, protocol: evaluation.Protocol, command: str,
                      rule) -> str:
    """experiments/configs/<rule>_tuned.py content for the selected settings, with its provenance."""
    label = eval_report.BASELINE_LABELS[rule.KIND]
    budgets = sorted({r["env_steps"] for r in summary.values()})
    rule_fields = tuple(rule.hyper_grid)  # metagrad: meta_lr, after the A2C fields
    fields = (*a2c_tuned.FIELDS, *rule_fields)
    entries = []
    for name, r in summary.items():
        result = r["result"]
        hyper = result.chosen_hyper
        values = (tuple(float(getattr(hyper, f)) for f in a2c_tuned.FIELDS)
                  + tuple(float(hyper.rule[f]) for f in rule_fields))
        mean = result.selection_table[result.chosen]
        entries.append(f"    {name!r}: {values!r},  # selection {mean:.3f}; report {result.summary()}")
    grid = (f"α_lr ∈ {tuple(config.sweep.learning_rates) or 'the task grid'} × value_cost ∈ "
            f"{tuple(config.sweep.value_costs)} × entropy_cost ∈ {tuple(config.sweep.entropy_costs)}")
    grid += "".join(f" × {f} ∈ {tuple(g)}" for f, g in rule.hyper_grid.items())
    return "\n".join([
        f'"""Tuned {label} settings per task (the single candidate launch/eval_report.py gives {label}).',
        "",
        "Produced by launch/train_agent.py:",
        "",
        f"    {command or 'python -m launch.train_agent (command not recorded)'}",
        "",
        f"Selected on seeds {list(protocol.selection_seeds)} (base seed {protocol.base_seed}); "
        f"reported on seeds {list(protocol.report_seeds)}.",
        f"Budget: {', '.join(f'{b:,}' for b in budgets)} env steps per lifetime, "
        f"{config.num_envs} envs × T={config.unroll_length}.",
        f"Grid: {grid}; {_discount_text(config)}, λ={config.hyper.td_lambda}.",
        *([_settings_text(rule).strip()] if rule.config() else []),
        f"Entries: task -> ({', '.join(fields)}). On a tabular",
        "task the value table's SGD step is learning_rate · value_cost (experiments/configs/a2c.py).",
        '"""',
        "",
        "PLACEHOLDER = False",
        "",
        f"FIELDS = {fields!r}",
        "",
        "TUNED = {",
        *entries,
        "}",
        "",
    ])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    try:
        validate(_CONFIG.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    train_loop.enable_compilation_cache(os.path.expanduser("~/.cache/lpg/jax_compilation_cache"))
    command = "python -m launch.train_agent " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run(_CONFIG.value, _WORKDIR.value, command=command)


def cli():
    app.run(main)


if __name__ == "__main__":
    cli()
