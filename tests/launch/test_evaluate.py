"""Tests of the evaluation launchers: seed specs, candidates, the LPG-vs-A2C report, the A2C sweep.

The command-line programs run as subprocesses (their absl flags would clash in one process).
"""

import csv
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import envs
from experiments.configs import a2c_tuned
from experiments.configs import lpg as lpg_configs
from launch import checkpoints
from launch import eval_report
from lpg import evaluation
from lpg import rules
from lpg.rules import lpg as lpg_rule

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRETRAINED = os.path.join(REPO, "experiments", "pretrained", "lpg_tabular")


@pytest.mark.parametrize("spec, start, expected", [
    ("0-3", 0, (0, 1, 2, 3)),
    ("100-107", 100, tuple(range(100, 108))),
    ("4", 0, (0, 1, 2, 3)),
    ("2", 100, (100, 101)),
    (3, 100, (100, 101, 102)),
    ("1, 5,7-8", 0, (1, 5, 7, 8)),
    ("9-9", 0, (9,)),
])
def test_parse_seeds(spec, start, expected):
    assert eval_report.parse_seeds(spec, name="--seeds", count_start=start) == expected


@pytest.mark.parametrize("spec, message", [
    ("3-1", "end before start"), ("0", "must be ≥ 1"), ("a-b", "cannot read 'a-b'"),
    ("1,1", "repeats"), ("", "cannot read"), (True, "not a seed spec"),
])
def test_parse_seeds_errors_name_the_flag_and_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        eval_report.parse_seeds(spec, name="--report_seeds", count_start=100)
    assert "--report_seeds" in str(err.value) and "allowed" in str(err.value)


def test_make_protocol_refuses_overlap():
    with pytest.raises(ValueError, match=r"--selection_seeds='0-3' and --report_seeds='3-5' share seeds \[3\]"):
        eval_report.make_protocol("0-3", "3-5", selection_name="--selection_seeds", report_name="--report_seeds")
    protocol = eval_report.make_protocol(2, 3, base_seed=5)
    assert (protocol.selection_seeds, protocol.report_seeds, protocol.base_seed) == ((0, 1), (100, 101, 102), 5)


def test_candidates_of_each_rule():
    task = envs.make("tabular/dense")
    rule = lpg_rule.LPG(hidden_size=8, y_dim=4, y_costs=(0.1, 0.5, 1.0))
    lpg = eval_report.lpg_candidates(task, rule)
    assert len(lpg) == 9 and "α_lr=80, α_y=0.1" in lpg
    assert {float(h.rule["y_cost"]) for h in lpg.values()} == set(rule.y_costs)
    assert len(eval_report.lpg_candidates(task, rule, y_cost=0.5)) == 3  # a fixed α_y
    tuned, source = eval_report.a2c_candidates(task, {"tabular/dense": (20.0, 0.05, 0.01, 0.995, 0.9)})
    assert source == "tuned" and list(tuned) == ["α_lr=20, c_V=0.05, c_H=0.01, γ=0.995, λ=0.9"]
    hyper = tuned["α_lr=20, c_V=0.05, c_H=0.01, γ=0.995, λ=0.9"]
    assert (float(hyper.learning_rate), float(hyper.value_cost), float(hyper.discount)) == (20.0, 0.05, 0.995)
    swept, source = eval_report.a2c_candidates(task, {})
    assert source == "swept" and len(swept) == 18  # {20, 40, 80} × {0.01, 0.05, 0.2} × {0.01, 0.05}
    assert {float(h.value_cost) for h in swept.values()} == {0.01, 0.05, 0.2}


def test_shipped_a2c_tuned_table_is_well_formed():
    assert a2c_tuned.FIELDS == ("learning_rate", "value_cost", "entropy_cost", "discount", "td_lambda")
    assert isinstance(a2c_tuned.PLACEHOLDER, bool)
    for name, values in a2c_tuned.TUNED.items():
        task = envs.make(name)
        learning_rate, value_cost, entropy_cost, discount, td_lambda = values
        assert learning_rate > 0 and value_cost >= 0 and entropy_cost >= 0
        assert 0 < discount <= 1 and 0 <= td_lambda <= 1
        assert task.agent.optimiser != "sgd" or learning_rate * value_cost < 40  # the diverging step


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_trained_rule_writes_the_paired_report(tmp_path):
    """`launch.train --evaluate`'s entry point on the shipped rule: chain/short has no tuned A2C
    entry, so A2C is swept (18 settings) and LPG selects α_lr × α_y (9) on seed 0; both report
    seeds 100 and 101."""
    config = lpg_configs.get_config("cpu")
    config.eval.tasks = "chain/short"
    config.eval.seeds = 2
    config.eval.selection_seeds = 1
    config.eval.env_steps = 1_000
    config.eval.num_envs = 2
    summary = eval_report.evaluate_trained_rule(PRETRAINED, config, str(tmp_path))
    res = summary["chain/short"]
    assert res["a2c_source"] == "swept" and res["comparison"].verdict in evaluation.VERDICTS
    assert res["LPG"].protocol.report_seeds == res["A2C"].protocol.report_seeds == (100, 101)
    out = tmp_path / "eval"
    rows = _read_csv(out / "eval_final_returns.csv")
    assert list(rows[0]) == ["task", "rule", "setting", "seed", "role", "final_return"]
    count = lambda rule, role: sum(r["rule"] == rule and r["role"] == role for r in rows)  # noqa: E731
    assert (count("LPG", "selection"), count("A2C", "selection")) == (9, 18)
    assert (count("LPG", "report"), count("A2C", "report")) == (2, 2)
    assert {r["seed"] for r in rows if r["role"] == "report"} == {"100", "101"}
    assert {r["seed"] for r in rows if r["role"] == "selection"} == {"0"}
    # The reported difference is the paired mean over the CSV's report rows.
    final = {(r["rule"], r["seed"]): float(r["final_return"]) for r in rows if r["role"] == "report"}
    diffs = [final["LPG", s] - final["A2C", s] for s in ("100", "101")]
    if all(map(math.isfinite, diffs)):
        assert res["comparison"].difference.mean == pytest.approx(np.mean(diffs), abs=1e-6)
    text = (out / "results.md").read_text()
    assert "| chain/short | 1,000 (0.1%) |" in text
    assert "LPG wins on" in text and "of 1 tasks." in text
    assert "no tuned entry" in text and "### chain/short" in text
    assert (out / "chain_short.png").stat().st_size > 0
    # Another learned rule is reported under its own name (here the same results relabelled EPG).
    relabelled = {"chain/short": {**{k: v for k, v in res.items() if k != "LPG"},
                                  "EPG": res["LPG"], "learned": "EPG"}}
    epg_text = "\n".join(eval_report.report_lines(relabelled, res["LPG"].protocol))
    assert "# EPG vs A2C" in epg_text and "| EPG − A2C" in epg_text and "EPG wins on" in epg_text
    assert "LPG mean" not in epg_text and "LPG wins" not in epg_text


def test_learned_rules_are_labelled_by_kind():
    assert eval_report.learned_label(rules.make_rule("lpg", {"hidden_size": 8, "y_dim": 4})) == "LPG"
    assert eval_report.learned_label(rules.make_rule(
        "epg", {"obs_size": 1, "action_size": 2, "discrete": True, "num_envs": 2})) == "EPG"


def test_evaluate_with_ppo_adds_a_swept_ppo_and_its_own_comparison(tmp_path):
    """--ppo's library path: PPO swept (12 settings) on the selection seed, reported on the same
    report seeds, LPG − PPO paired, and its table and selection table in results.md."""
    rule, meta_params, provenance = checkpoints.load_rule(PRETRAINED)
    protocol = eval_report.make_protocol(1, 2)
    summary = eval_report.evaluate_rule_on_tasks(
        rule, meta_params, tasks="chain/short", protocol=protocol, env_steps=1_000, num_envs=4,
        workdir=str(tmp_path), provenance=provenance, with_ppo=True)
    res = summary["chain/short"]
    assert res["PPO"].protocol.report_seeds == res["LPG"].protocol.report_seeds == (100, 101)
    assert len(res["PPO"].candidates) == 12 and res["comparison_ppo"].verdict in evaluation.VERDICTS
    rows = _read_csv(tmp_path / "eval_final_returns.csv")
    final = {(r["rule"], r["seed"]): float(r["final_return"]) for r in rows if r["role"] == "report"}
    diffs = [final["LPG", s] - final["PPO", s] for s in ("100", "101")]
    if all(map(math.isfinite, diffs)):
        assert res["comparison_ppo"].difference.mean == pytest.approx(np.mean(diffs), abs=1e-6)
    text = (tmp_path / "results.md").read_text()
    assert "LPG vs PPO" in text and "against PPO." in text
    assert "PPO on selection seeds 0 (swept, experiments/configs/ppo.py)" in text


def _run(module, args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--selection_seeds=0-3", "--report_seeds=3-10"],
     "--selection_seeds='0-3' and --report_seeds='3-10' share seeds [3]"),
    (["--num_envs=0"], "--num_envs=0 must be > 0"),
    (["--unroll_length=0"], "--unroll_length=0 must be > 0"),
    (["--tasks=tabular/nope"], "tabular/nope"),
    (["--ppo", "--num_envs=6"], "--num_envs=6 must be a multiple of PPO's 4 minibatches with --ppo"),
    (["--reward_scale=-1"], "--reward_scale=-1.0 must be > 0"),
])
def test_evaluate_cli_rejects_bad_flags_before_work(tmp_path, args, message):
    workdir = tmp_path / "eval"
    result = _run("launch.evaluate", ["--rule", PRETRAINED, "--workdir", str(workdir), *args])
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not workdir.exists()


def test_train_agent_sweeps_selects_and_writes_a_tuned_config(tmp_path):
    workdir = tmp_path / "a2c"
    args = ["--workdir", str(workdir), "--config.tasks=chain/short", "--config.env_steps=1000",
            "--config.num_envs=2", "--config.selection_seeds=2", "--config.report_seeds=2",
            "--config.sweep.learning_rates=(40.0,)", "--config.sweep.value_costs=(0.05,0.5)",
            "--config.sweep.entropy_costs=(0.01,)", "--config.updates_per_chunk=10"]
    result = _run("launch.train_agent", args)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = _read_csv(workdir / "sweep.csv")
    assert [r["setting"] for r in sweep] == ["α_lr=40, c_V=0.05, c_H=0.01", "α_lr=40, c_V=0.5, c_H=0.01"]
    assert {"seed_0", "seed_1", "selection_mean_final", "diverged_seeds"} <= set(sweep[0])
    chosen = [r for r in sweep if r["chosen"] == "1"]
    assert len(chosen) == 1
    means = [float(r["selection_mean_final"]) for r in sweep]
    assert float(chosen[0]["selection_mean_final"]) == max(means)
    assert "| 0.05, 0.01 |" in (workdir / "sweep.md").read_text()
    namespace = {}
    exec((workdir / "a2c_tuned.py").read_text(), namespace)  # pylint: disable=exec-used
    assert namespace["PLACEHOLDER"] is False
    values = namespace["TUNED"]["chain/short"]
    assert values == (40.0, float(chosen[0]["value_cost"]), 0.01, 0.99, 0.95)
    doc = namespace["__doc__"]
    assert "--config.env_steps=1000" in doc and "[0, 1]" in doc and "[100, 101]" in doc
    rows = _read_csv(workdir / "final_returns.csv")
    assert sum(r["role"] == "selection" for r in rows) == 4 and sum(r["role"] == "report" for r in rows) == 2
    assert "chain/short" in (workdir / "results.md").read_text()
    assert (workdir / "chain_short.png").stat().st_size > 0 and (workdir / "chain_short.csv").is_file()


def test_train_agent_tunes_ppo_and_refuses_a_bad_minibatch_split(tmp_path):
    workdir = tmp_path / "ppo"
    args = ["--config", "experiments/configs/ppo.py", "--workdir", str(workdir),
            "--config.tasks=gymnax/CartPole-v1", "--config.env_steps=1024", "--config.num_envs=4",
            "--config.unroll_length=8", "--config.ppo.minibatches=2", "--config.ppo.epochs=2",
            "--config.selection_seeds=2", "--config.report_seeds=2",
            "--config.sweep.learning_rates=(1e-3,)", "--config.sweep.value_costs=(0.5,)",
            "--config.sweep.entropy_costs=(0.0,0.01)", "--config.updates_per_chunk=8"]
    result = _run("launch.train_agent", args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(_read_csv(workdir / "sweep.csv")) == 2
    namespace = {}
    exec((workdir / "ppo_tuned.py").read_text(), namespace)  # pylint: disable=exec-used
    assert set(namespace["TUNED"]) == {"gymnax/CartPole-v1"} and "'minibatches': 2" in namespace["__doc__"]
    assert "PPO final return" in (workdir / "results.md").read_text()

    bad = _run("launch.train_agent", ["--config", "experiments/configs/ppo.py", "--workdir",
                                      str(tmp_path / "bad"), "--config.num_envs=6"])
    assert bad.returncode != 0
    assert "config.num_envs=6 must be a multiple of config.ppo.minibatches=4" in bad.stderr
    assert not (tmp_path / "bad").exists()
    bad = _run("launch.train_agent", ["--config", "experiments/configs/ppo.py", "--workdir",
                                      str(tmp_path / "bad"), "--config.ppo.clip_epsilon=-1"])
    assert bad.returncode != 0 and "clip_epsilon must be a finite number > 0, got -1" in bad.stderr


def test_train_agent_sweeps_metagrad_settings_and_writes_gamma_lambda_curves(tmp_path):
    """config.rule = "metagrad": the sweep crosses the initial γ and η's step size β, and the
    learned γ, λ of every report seed land per update in <task>_stats.csv and in results.md."""
    workdir = tmp_path / "metagrad"
    args = ["--config", "experiments/configs/metagrad.py:cpu", "--workdir", str(workdir),
            "--config.env_steps=1280", "--config.num_envs=8", "--config.unroll_length=20",
            "--config.selection_seeds=1", "--config.report_seeds=2", "--config.updates_per_chunk=8",
            "--config.sweep.discounts=(0.9,)", "--config.metagrad.meta_learning_rates=(0.01,0.1)"]
    result = _run("launch.train_agent", args)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = _read_csv(workdir / "sweep.csv")
    assert [r["setting"] for r in sweep] == ["α_lr=40, c_V=0.05, c_H=0.01, γ=0.9, β=0.01",
                                             "α_lr=40, c_V=0.05, c_H=0.01, γ=0.9, β=0.1"]
    assert [float(r["meta_lr"]) for r in sweep] == [0.01, 0.1]
    assert "| c_V, c_H, β | α_lr=40 |" in (workdir / "sweep.md").read_text()
    assert (workdir / "chain_short_stats.png").stat().st_size > 0
    stats = _read_csv(workdir / "chain_short_stats.csv")
    assert [int(r["update"]) for r in stats] == list(range(1, 9))  # 1280 steps / (8 × 20)
    gammas = [float(r["discount_seed_100"]) for r in stats]
    assert gammas[0] == pytest.approx(0.9) and gammas[-1] != gammas[0]  # learned within the lifetime
    assert all(0 < float(r["td_lambda_mean"]) < 1 for r in stats)
    assert "| chain/short | 0." in (workdir / "results.md").read_text().split("at the last update")[1]
    namespace = {}
    exec((workdir / "metagrad_tuned.py").read_text(), namespace)  # pylint: disable=exec-used
    assert namespace["FIELDS"][-1] == "meta_lr" and len(namespace["TUNED"]["chain/short"]) == 6

    bad = _run("launch.train_agent", ["--config", "experiments/configs/metagrad.py:cpu", "--workdir",
                                      str(tmp_path / "bad"), "--config.metagrad.trace_decay=2.0"])
    assert bad.returncode != 0 and "MetaGrad.trace_decay must be a number in [0, 1], got 2.0" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_train_agent_refuses_overlapping_seeds(tmp_path):
    workdir = tmp_path / "a2c"
    result = _run("launch.train_agent", ["--workdir", str(workdir), "--config.selection_seeds=0-3",
                                         "--config.report_seeds=2-5"])
    assert result.returncode != 0
    assert "config.selection_seeds='0-3' and config.report_seeds='2-5' share seeds [2, 3]" in result.stderr
    assert not workdir.exists()


def _write_returns(path, rows, name="eval_final_returns.csv"):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w") as f:
        f.write("task,rule,setting,seed,role,final_return\n")
        for task, rule, seed, role, value in rows:
            f.write(f'{task},{rule},"α_lr=1",{seed},{role},{value}\n')


def test_compare_runs_pairs_report_seeds_of_two_evaluations(tmp_path):
    from launch import compare_runs  # pylint: disable=g-import-not-at-top

    a_dir, b_dir = str(tmp_path / "a"), str(tmp_path / "b")
    _write_returns(a_dir, [("t", "LPG", s, "report", 10 + s) for s in range(100, 104)]
                   + [("t", "LPG", 0, "selection", -99.0), ("t", "A2C", 100, "report", 0.0)])
    _write_returns(b_dir, [("t", "LPG", s, "report", s) for s in range(100, 104)])
    lines = compare_runs.compare(compare_runs.report_returns(a_dir, "LPG"),
                                 compare_runs.report_returns(b_dir, "LPG"), "ES", "BP")
    # A − B is exactly 10 on every seed: a degenerate CI at 10, a win; selection rows are ignored.
    assert lines[2] == ("| t | 100–103 (4) | 111.500 [110.500, 112.500] | 101.500 [100.500, 102.500] | "
                        "10.000 [10.000, 10.000] | win |")
    _write_returns(b_dir, [("t", "LPG", s, "report", s) for s in range(101, 105)])
    with pytest.raises(ValueError, match="report seeds differ"):
        compare_runs.compare(compare_runs.report_returns(a_dir, "LPG"),
                             compare_runs.report_returns(b_dir, "LPG"), "ES", "BP")
    with pytest.raises(ValueError, match="no report rows of rule 'PPO'"):
        compare_runs.report_returns(a_dir, "PPO")
    # A launch.train_agent workdir (final_returns.csv) is read the same way.
    c_dir = str(tmp_path / "agent")
    _write_returns(c_dir, [("t", "A2C", 100, "report", 3.0)], name="final_returns.csv")
    assert compare_runs.report_returns(c_dir, "A2C") == {"t": {100: 3.0}}
    with pytest.raises(FileNotFoundError, match="launch.train_agent workdir"):
        compare_runs.report_returns(str(tmp_path), "A2C")
