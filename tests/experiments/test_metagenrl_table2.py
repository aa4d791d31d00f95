"""Tests of experiments/metagenrl_table2.py: the agents' settings come from the meta-training
run, a non-MetaGenRL rule is refused, and the table pairs MetaGenRL with every baseline."""

import json
import os

from absl import app
import jax
import numpy as np
import pytest

from experiments import metagenrl_table2 as table2
from experiments.configs import metagenrl as metagenrl_configs
from launch import checkpoints
from lpg import evaluation
from lpg.rules import a2c
from lpg.rules import metagenrl


def _run_config():
    return json.loads(metagenrl_configs.get_config("table2_cpu").to_json())


def test_agents_are_the_meta_training_runs():
    config = table2.td3_config(_run_config())
    assert (config.hidden, config.batch_size, config.warmup_steps, config.num_envs) == ((64, 64), 64, 1000, 1)


def test_a_rule_that_is_not_a_metagenrl_objective_is_refused(tmp_path):
    checkpoints.save_rule(str(tmp_path / "a2c"), a2c.A2C(), {})
    with pytest.raises(app.UsageError, match="not a MetaGenRL objective"):
        table2.load_objective(str(tmp_path / "a2c"))
    objective = metagenrl.Objective(lstm_size=4, action_layers=1, action_filters=2)
    checkpoints.save_rule(str(tmp_path / "mg"), objective, objective.init_params(jax.random.key(0)),
                          {"workdir": str(tmp_path / "missing")})
    with pytest.raises(app.UsageError, match="meta-training config .* does not exist"):
        table2.load_objective(str(tmp_path / "mg"))
    os.makedirs(tmp_path / "missing")
    with open(tmp_path / "missing" / "config.json", "w") as f:
        json.dump(_run_config(), f)
    loaded, _, _, run_config = table2.load_objective(str(tmp_path / "mg"))
    assert loaded == objective and run_config["meta"]["num_agents"] == 8


def _evaluation(finals):
    protocol = evaluation.Protocol(selection_seeds=(0,), report_seeds=(100, 101, 102), n_bootstrap=200)
    finals = np.asarray(finals, float)
    return evaluation.Evaluation(
        task="t", protocol=protocol, candidates=("s",), candidate_hypers=(None,),
        selection_final=np.full((1, 1), np.nan), selection_diverged=np.zeros((1, 1), bool), chosen="s",
        chosen_hyper=None, report_final=finals, report_curves=finals[:, None],
        report_diverged=np.zeros(3, bool), env_steps=np.array([1]))


def test_table_pairs_each_objective_with_each_baseline():
    results = {"MetaGenRL[a]": _evaluation([10.0, 20.0, 30.0]), "MetaGenRL[b]": _evaluation([12.0, 22.0, 32.0]),
               "TD3": _evaluation([11.0, 21.0, 31.0]), "PPO": _evaluation([5.0, 15.0, 25.0]),
               "A2C": _evaluation([10.0, 25.0, 20.0])}
    lines = table2.report_lines({"brax/x": results}, results["TD3"].protocol, {"brax/x"},
                                {"MetaGenRL[a]": {"step": 1}, "MetaGenRL[b]": {"step": 2}}, 1000)
    means = next(line for line in lines if line.startswith("| brax/x | yes"))
    assert means.count("[") == 5  # five learners' means with CIs
    row_a = next(line for line in lines if line.startswith("| brax/x | MetaGenRL[a]"))
    assert "-1.000 [-1.000, -1.000] loss" in row_a  # − TD3: exactly −1 on every seed
    assert "5.000 [5.000, 5.000] win" in row_a  # − PPO: +5 on every seed
    assert "tie" in row_a  # − A2C: 0, −5, +10
    row_b = next(line for line in lines if line.startswith("| brax/x | MetaGenRL[b]"))
    assert "1.000 [1.000, 1.000] win" in row_b  # − TD3: +1 on every seed


def test_objective_labels():
    assert table2.objective_labels(["runs/a/rule"]) == ["MetaGenRL"]
    assert table2.objective_labels(["runs/a/rule", "runs/b/rule/"]) == ["MetaGenRL[a]", "MetaGenRL[b]"]
