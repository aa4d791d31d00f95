"""Fig. 7 of Oh et al. 2020 at this machine's scale: meta-train full LPG, its ablations and LPG-V
on the 5 tabular grids, meta-test each rule, and tabulate the final returns against full LPG.

    python -m experiments.fig7_ablations --workdir runs/fig7 --steps 1500 --dry_run   # commands only
    python -m experiments.fig7_ablations --workdir runs/fig7 --steps 1500

For every preset (experiments/configs/lpg.py: `tabular` is full LPG; each ablation and `lpg_v`
is `tabular` with one thing changed, FIG7_CHANGES) it runs, in sequence,

    python -m launch.train --config experiments/configs/lpg.py:<preset> --workdir <workdir>/<preset> \
        --config.meta.steps=<steps>
    python -m launch.evaluate --rule <workdir>/<preset>/rule --workdir <workdir>/<preset>/eval \
        --tasks <preset's eval.tasks> --selection_seeds 0-3 --report_seeds 100-107 \
        --env_steps <eval.env_steps> --num_envs <eval.num_envs>

(launch.train resumes a preset's run from its checkpoints when rerun; launch.evaluate chooses
each rule's α_lr and α_y — α_V for LPG-V — on the selection seeds and reports the disjoint report
seeds, the same lifetimes for every rule, so the differences below are paired per seed). Then it
reads every <workdir>/<preset>/eval/eval_final_returns.csv and writes <workdir>/fig7.md: per
task, the learned rule's mean final return over the report seeds for each preset, and each
preset's difference from full LPG, paired per report seed, with a 95% percentile-bootstrap CI.
A preset whose training or evaluation failed, or that has no results yet, shows "n/a": nothing
is filled in. It also plots every preset's meta-training curves (each task's training return
from metrics.csv, block means of 50 meta-steps) to <workdir>/fig7_meta_training.png.
`--report_only` runs nothing and only writes those two files, e.g. after two chains of presets
ran side by side, one per core:

    taskset -c 0 python -m experiments.fig7_ablations --workdir runs/fig7 --steps 1000 \
        --presets tabular,ablate_no_softmax,ablate_no_y_entropy --train_flags=--cpu_devices=0
    taskset -c 1 python -m experiments.fig7_ablations --workdir runs/fig7 --steps 1000 \
        --presets lpg_v,ablate_no_l2,ablate_fixed_hyper --train_flags=--cpu_devices=0
    python -m experiments.fig7_ablations --workdir runs/fig7 --report_only
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from typing import Mapping, Sequence

from absl import app
from absl import flags
import numpy as np

from experiments import script_flags
from experiments.configs import lpg as lpg_configs

REFERENCE = lpg_configs.FIG7_BASE  # full LPG
DEFAULT_PRESETS = (REFERENCE,) + tuple(lpg_configs.FIG7_CHANGES)
CONFIG_FILE = "experiments/configs/lpg.py"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP_RESAMPLES = 10_000

_WORKDIR = script_flags.WORKDIR
_STEPS = flags.DEFINE_integer(
    "steps", 5000, "Meta-steps of every run (--config.meta.steps; the same for every preset). "
    "The tabular preset's own is 5000; its LPG runs burst at ~1800-1900 (BUILD_NOTES.md).")
_PRESETS = flags.DEFINE_list(
    "presets", list(DEFAULT_PRESETS),
    f"Presets of {CONFIG_FILE} to train and evaluate, in order; '{REFERENCE}' is full LPG, the "
    "reference of the table (its results are read from <workdir>/{REFERENCE} if it is not listed).")
_TRAIN_FLAGS = flags.DEFINE_list(
    "train_flags", [], "Extra flags appended to every launch.train command, e.g. "
    "--train_flags=--cpu_devices=0 to run two chains side by side, one per core (taskset).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only print the commands.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Run nothing: only write fig7.md and fig7_meta_training.png from the "
    "runs already under --workdir (e.g. after chains of presets ran side by side).")
# Meta-steps averaged into one point of the meta-training curves.
CURVE_SMOOTHING = 50


def seed_range(first: int, count: int) -> str:
    """'first-last' for `count` consecutive seeds (launch.evaluate's seed spec)."""
    return f"{first}-{first + count - 1}"


def commands(preset: str, workdir: str, steps: int, python: str = "python",
             train_flags: Sequence[str] = ()) -> list[list[str]]:
    """[train command, evaluate command] of one preset (argv lists); `train_flags` are appended
    to the train command."""
    config = lpg_configs.get_config(preset)
    run_dir = os.path.join(workdir, preset)
    train = [python, "-m", "launch.train", "--config", f"{CONFIG_FILE}:{preset}", "--workdir", run_dir,
             f"--config.meta.steps={steps}", *train_flags]
    evaluate = [python, "-m", "launch.evaluate", "--rule", os.path.join(run_dir, "rule"),
                "--workdir", os.path.join(run_dir, "eval"), "--tasks", config.eval.tasks,
                "--selection_seeds", seed_range(0, int(config.eval.selection_seeds)),
                "--report_seeds", seed_range(100, int(config.eval.seeds)),
                "--env_steps", str(int(config.eval.env_steps)), "--num_envs", str(int(config.eval.num_envs))]
    return [train, evaluate]


def read_report_returns(path: str) -> dict[str, dict[int, float]]:
    """{task: {report seed: final return}} of the learned rule (not A2C/PPO) in an
    eval_final_returns.csv; {} if the file does not exist."""
    if not os.path.exists(path):
        return {}
    out: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["role"] == "report" and row["rule"] not in ("A2C", "PPO"):
                out.setdefault(row["task"], {})[int(row["seed"])] = float(row["final_return"])
    return out


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], seed: int = 0
                      ) -> tuple[float, float, float, int]:
    """(mean of a − b, 95% CI low, high, n) over the seeds both have (NaN seeds dropped);
    percentile bootstrap over seeds. NaNs and n = 0 when they share none."""
    diffs = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))], dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    if not diffs.size:
        return float("nan"), float("nan"), float("nan"), 0
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(BOOTSTRAP_RESAMPLES, diffs.size)).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diffs.mean()), float(low), float(high), int(diffs.size)


def _rule_step(run_dir: str) -> str:
    """The meta-step of the evaluated rule (its rule.json provenance), or '?'."""
    try:
        with open(os.path.join(run_dir, "rule", "rule.json")) as f:
            return str(json.load(f)["provenance"]["step"])
    except (OSError, KeyError, ValueError):
        return "?"


def table_lines(workdir: str, presets: Sequence[str]) -> list[str]:
    """Markdown of fig7.md (module docstring) from the eval CSVs under `workdir`."""
    presets = [REFERENCE] + [p for p in presets if p != REFERENCE]
    results = {p: read_report_returns(os.path.join(workdir, p, "eval", "eval_final_returns.csv"))
               for p in presets}
    tasks = sorted({task for r in results.values() for task in r})
    lines = [
        "# Fig. 7 at this machine's scale: final meta-test return per preset vs full LPG",
        "",
        f"Mean final return of the learned rule over the report seeds (launch.evaluate; α chosen on "
        f"the selection seeds). In brackets: preset − full LPG ({REFERENCE}), paired per report "
        f"seed, mean [95% percentile-bootstrap CI, {BOOTSTRAP_RESAMPLES:,} resamples]. n/a: no results.",
        "",
        "Evaluated rules (meta-step): " + ", ".join(
            f"{p} ({_rule_step(os.path.join(workdir, p))})" for p in presets),
        "",
        "| task | " + " | ".join(presets) + " |",
        "|---|" + "---|" * len(presets),
    ]
    for task in tasks:
        reference = results[REFERENCE].get(task, {})
        cells = []
        for preset in presets:
            finals = results[preset].get(task, {})
            values = np.array([v for v in finals.values() if np.isfinite(v)])
            if not values.size:
                cells.append("n/a")
                continue
            cell = f"{values.mean():.3f}"
            if preset != REFERENCE:
                diff, low, high, n = paired_difference(finals, reference)
                cell += f" ({diff:+.3f} [{low:+.3f}, {high:+.3f}])" if n else " (no paired seeds)"
            cells.append(cell)
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if not tasks:
        lines.append("| (no results yet) |" + " |" * len(presets))
    return lines


def read_meta_training(run_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{task: (meta-steps, training return)} from a run's metrics.csv: every task's
    `<task>/recent_return` column (the mean return of the episodes its lifetimes finished in
    the logged meta-step), NaN rows dropped. {} if there is no metrics.csv."""
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for column in (rows[0] if rows else {}):
        if column.endswith("/recent_return"):
            steps = np.array([float(r["step"]) for r in rows])
            values = np.array([float(r[column]) if r[column] not in ("", "nan") else np.nan for r in rows])
            keep = np.isfinite(values)
            out[column[:-len("/recent_return")]] = (steps[keep], values[keep])
    return out


def smooth(steps: np.ndarray, values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Means over consecutive blocks of `width` meta-steps: (block mid-steps, block means)."""
    blocks = (steps // width).astype(int)
    ids = np.unique(blocks)
    return (ids * width + width / 2, np.array([values[blocks == i].mean() for i in ids]))


def plot_meta_training(workdir: str, presets: Sequence[str], path: str) -> None:
    """One panel per task: each preset's meta-training return (block means of CURVE_SMOOTHING
    meta-steps) against meta-steps."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    curves = {p: read_meta_training(os.path.join(workdir, p)) for p in presets}
    tasks = sorted({t for c in curves.values() for t in c})
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for preset in presets:
            if task in curves[preset]:
                ax.plot(*smooth(*curves[preset][task], CURVE_SMOOTHING), label=preset)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("meta-step")
    axes[0][0].set_ylabel(f"training return (mean of {CURVE_SMOOTHING} meta-steps)")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(workdir: str, presets: Sequence[str]) -> list[str]:
    """fig7.md and fig7_meta_training.png under `workdir`; returns fig7.md's lines."""
    lines = table_lines(workdir, presets)
    with open(os.path.join(workdir, "fig7.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    ordered = [REFERENCE] + [p for p in presets if p != REFERENCE]
    plot_meta_training(workdir, ordered, os.path.join(workdir, "fig7_meta_training.png"))
    return lines


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    if _STEPS.value < 1:
        raise app.UsageError(f"--steps={_STEPS.value} must be >= 1")
    unknown = [p for p in _PRESETS.value if p not in lpg_configs.PRESETS]
    if unknown or not _PRESETS.value:
        raise app.UsageError(f"--presets: unknown {unknown}; allowed: {lpg_configs.PRESETS}")
    workdir = os.path.abspath(_WORKDIR.value)
    if _REPORT_ONLY.value:
        print("\n".join(write_report(workdir, _PRESETS.value)))
        return
    python = "python" if _DRY_RUN.value else sys.executable
    failed = []
    for preset in _PRESETS.value:
        for command in commands(preset, workdir, _STEPS.value, python, _TRAIN_FLAGS.value):
            print(shlex.join(command), flush=True)
            if _DRY_RUN.value:
                continue
            if subprocess.run(command, cwd=REPO_ROOT, check=False).returncode != 0:
                failed.append(preset)
                print(f"# {preset}: {command[2]} failed; its later steps are skipped", flush=True)
                break
    if _DRY_RUN.value:
        return
    print("\n".join(write_report(workdir, _PRESETS.value)))
    if failed:
        raise SystemExit(f"failed presets: {failed}")


if __name__ == "__main__":
    app.run(main)
