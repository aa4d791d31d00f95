"""Tests of the Fig. 7 driver (experiments/fig7_ablations.py): its commands and its table."""

import csv
import os

import numpy as np

from experiments import fig7_ablations as fig7
from experiments.configs import lpg as lpg_configs


def test_commands_train_the_preset_then_evaluate_its_rule():
    train, evaluate = fig7.commands("lpg_v", "/w", 1500)
    assert train == ["python", "-m", "launch.train", "--config", "experiments/configs/lpg.py:lpg_v",
                     "--workdir", "/w/lpg_v", "--config.meta.steps=1500"]
    eval_config = lpg_configs.get_config("lpg_v").eval
    assert evaluate[:7] == ["python", "-m", "launch.evaluate", "--rule", "/w/lpg_v/rule",
                            "--workdir", "/w/lpg_v/eval"]
    flags = dict(zip(evaluate[7::2], evaluate[8::2]))
    assert flags == {"--tasks": eval_config.tasks, "--selection_seeds": "0-3", "--report_seeds": "100-107",
                     "--env_steps": "300000", "--num_envs": "32"}
    assert set(fig7.DEFAULT_PRESETS) == {"tabular", *lpg_configs.FIG7_CHANGES}
    train, evaluate_with_flags = fig7.commands("lpg_v", "/w", 1500, train_flags=["--cpu_devices=0"])
    assert train[-2:] == ["--config.meta.steps=1500", "--cpu_devices=0"]
    assert evaluate_with_flags == evaluate  # train flags only


def _write(workdir, preset, rule, finals):
    os.makedirs(os.path.join(workdir, preset, "eval"))
    with open(os.path.join(workdir, preset, "eval", "eval_final_returns.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("task", "rule", "setting", "seed", "role", "final_return"))
        for seed, value in finals.items():
            writer.writerow(("tabular/dense", "A2C", "a", seed, "report", 100.0))  # never read
            writer.writerow(("tabular/dense", rule, "s", seed, "selection", -50.0))  # never read
            writer.writerow(("tabular/dense", rule, "s", seed, "report", value))


def test_table_has_means_and_paired_differences_and_na_for_missing_runs(tmp_path):
    workdir = str(tmp_path)
    _write(workdir, "tabular", "LPG", {100: 10.0, 101: 20.0, 102: 30.0})
    _write(workdir, "lpg_v", "LPG-V", {100: 9.0, 101: 19.0, 102: 29.0})  # exactly 1 below, per seed
    lines = fig7.table_lines(workdir, ["lpg_v", "ablate_no_l2"])
    header = next(line for line in lines if line.startswith("| task"))
    assert header == "| task | tabular | lpg_v | ablate_no_l2 |"
    row = next(line for line in lines if line.startswith("| tabular/dense"))
    assert row == "| tabular/dense | 20.000 | 19.000 (-1.000 [-1.000, -1.000]) | n/a |"
    diff, low, high, n = fig7.paired_difference({1: 1.0, 2: 5.0, 3: np.nan}, {1: 0.0, 2: 0.0, 3: 0.0, 4: 9.0})
    assert (diff, n) == (3.0, 2) and 1.0 <= low <= high <= 5.0


def test_meta_training_curves_are_read_and_plotted(tmp_path):
    run = tmp_path / "tabular"
    run.mkdir()
    with open(run / "metrics.csv", "w") as f:
        f.write("step,meta_loss,tabular/dense/recent_return,tabular/sparse/recent_return\n")
        for step in range(100):
            f.write(f"{step},0.1,{step},{'nan' if step % 2 else 0.5}\n")
    curves = fig7.read_meta_training(str(run))
    assert set(curves) == {"tabular/dense", "tabular/sparse"}
    assert len(curves["tabular/sparse"][0]) == 50  # NaN rows dropped
    mid, means = fig7.smooth(*curves["tabular/dense"], 50)
    np.testing.assert_allclose(means, [24.5, 74.5])
    np.testing.assert_allclose(mid, [25, 75])
    lines = fig7.write_report(str(tmp_path), ["tabular", "lpg_v"])
    assert (tmp_path / "fig7_meta_training.png").exists() and (tmp_path / "fig7.md").exists()
    assert lines[0].startswith("# Fig. 7")
