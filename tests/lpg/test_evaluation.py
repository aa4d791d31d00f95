"""Tests for lpg/evaluation.py: paired seeds, selection on disjoint seeds, bootstrap statistics."""

import jax
import numpy as np
import pytest

import envs
from envs.wrappers import transforms
from lpg import evaluation
from lpg import types
from lpg.rules import a2c


def a2c_hyper(learning_rate=40.0, value_cost=0.5):
    return types.HyperParams(learning_rate=learning_rate, discount=0.99, 
                             entropy_cost=0.01, value_cost=value_cost, td_lambda=0.95)


# ------------------------------------------------------------------------------------- protocol


def test_protocol_refuses_overlapping_seeds():
    with pytest.raises(ValueError, match=r"overlap on \[3, 5\]"):
        evaluation.Protocol(selection_seeds=(0, 3, 5), report_seeds=(3, 4, 5))
    protocol = evaluation.Protocol()
    assert protocol.selection_seeds == (0, 1, 2, 3)
    assert protocol.report_seeds == tuple(range(100, 108))
    assert not set(protocol.selection_seeds) & set(protocol.report_seeds)


@pytest.mark.parametrize("kwargs, message", [
    (dict(selection_seeds=()), "selection_seeds must not be empty"),
    (dict(report_seeds=(100, 100)), "repeated"),
    (dict(final_fraction=0.0), "final_fraction"),
    (dict(confidence=1.0), "confidence"),
    (dict(curve_window=0), "curve_window"),
])
def test_protocol_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluation.Protocol(**kwargs)


def test_budget_from_env_steps():
    budget = evaluation.Budget.from_env_steps(10_000, num_envs=16)  # 320 steps per update
    assert budget.num_updates == 31 and budget.env_steps == 31 * 320
    np.testing.assert_array_equal(budget.env_steps_per_point[:2], [320, 640])
    with pytest.raises(ValueError, match="num_envs"):
        evaluation.Budget(num_updates=3, num_envs=0)


def test_hyper_grid_names_and_values():
    grid = evaluation.hyper_grid(a2c_hyper(), learning_rate=(20, 40), value_cost=(0.01, 0.2, 0.5))
    assert len(grid) == 6
    assert list(grid)[:2] == ["α_lr=20, c_V=0.01", "α_lr=20, c_V=0.2"]  # first field slowest
    hyper = grid["α_lr=40, c_V=0.5"]
    assert float(hyper.learning_rate) == 40 and float(hyper.value_cost) == 0.5
    assert float(hyper.entropy_cost) == 0.01  # from the base
    with pytest.raises(ValueError, match=r"unknown hyperparameters \['alpha'\]"):
        evaluation.hyper_grid(a2c_hyper(), alpha=(1,))
    # A rule hyperparameter (in base.rule) is an axis too, and lands in HyperParams.rule.
    grid = evaluation.hyper_grid(a2c_hyper().replace(rule={"y_cost": 0.0}), y_cost=(0.1, 1.0))
    assert list(grid) == ["α_y=0.1", "α_y=1"] and float(grid["α_y=1"].rule["y_cost"]) == 1.0


# --------------------------------------------------------------------------------- paired seeds


def test_same_seed_is_bit_identical_alone_and_in_a_batch():
    """Seed 5 at α_lr = 40: alone (1 lifetime per call, chunks of 7 updates) and as the last of
    4 lifetimes with other seeds and settings (one chunk) gives the same curve and losses."""
    task = envs.make("chain/short")
    budget = evaluation.Budget(num_updates=30, num_envs=4)
    alone = evaluation.LifetimeRunner(task, a2c.A2C(), budget, lifetimes_per_call=1, updates_per_chunk=7)
    batch = evaluation.LifetimeRunner(task, a2c.A2C(), budget, lifetimes_per_call=4)
    hyper = a2c_hyper(40.0)
    a = alone.stats({}, [hyper], [5])
    b = batch.stats({}, [a2c_hyper(20.0, value_cost=0.05), hyper], [3, 5])  # [2, 2, U]
    for name in ("return_sum", "return_count", "loss"):
        np.testing.assert_array_equal(a[name][0, 0], b[name][1, 1], err_msg=name)
    # Not vacuous: the other seed is another lifetime, the other setting learns differently.
    assert not np.array_equal(b["loss"][1, 0], b["loss"][1, 1])
    assert not np.array_equal(b["loss"][0, 1], b["loss"][1, 1])
    assert a["return_count"].sum() > 0


def test_settings_of_a_seed_share_environment_theta0_and_keys():
    """Two α_lr on the same seed: the first update (on θ0, before α_lr acts) has the same loss,
    so E, θ0 (a random MLP init here) and the update keys agree; afterwards they differ."""
    task = envs.make("chain/distractor")  # MLP agent: θ0 depends on the key
    budget = evaluation.Budget(num_updates=3, num_envs=4, unroll_length=10)
    runner = evaluation.LifetimeRunner(task, a2c.A2C(), budget, lifetimes_per_call=4)
    stats = runner.stats({}, [a2c_hyper(1e-3), a2c_hyper(3e-2)], [4, 9])  # [C=2, S=2, U=3]
    loss = stats["loss"]
    np.testing.assert_array_equal(loss[0, :, 0], loss[1, :, 0])
    assert loss[0, 0, 0] != loss[0, 1, 0]  # another seed: another lifetime
    assert np.all(loss[0, :, 1:] != loss[1, :, 1:])  # α_lr took effect after the first update


def test_runner_compiles_once_for_every_batch_and_chunk():
    task = envs.make("chain/short")
    runner = evaluation.LifetimeRunner(task, a2c.A2C(), evaluation.Budget(num_updates=10, num_envs=2,
                                       unroll_length=5), lifetimes_per_call=2, updates_per_chunk=4)
    done = []
    out = runner.stats({}, [a2c_hyper(20.0), a2c_hyper(40.0), a2c_hyper(80.0)], [0, 1, 2],
                       progress=done.append)  # 9 lifetimes: 5 calls, last one padded
    assert out["return_sum"].shape == (3, 3, 10)
    assert sum(done) == 9 * 10  # padding is not counted
    runner.stats({}, [a2c_hyper(40.0)], [7])
    assert runner._run_chunk._cache_size() == 1  # pylint: disable=protected-access


def test_runner_extra_stats_on_a_reward_scaled_task():
    """launch.diagnose_transfer's pieces: a task with rewards × 0.5 collects the same first
    rollout (θ0, same keys) with exactly half the return; `extra_stats` come back per update."""
    task = envs.make("chain/short")
    half = transforms.scale_rewards(task, 0.5)
    budget = evaluation.Budget(num_updates=4, num_envs=4, unroll_length=40)  # episodes finish
    stats = [evaluation.LifetimeRunner(t, a2c.A2C(), budget, lifetimes_per_call=2,
                                       extra_stats=("entropy", "grad_norm")).stats({}, [a2c_hyper(40.0)], [1, 2])
             for t in (task, half)]
    assert np.abs(stats[0]["return_sum"][0, :, 0]).sum() > 0  # not vacuous: nonzero returns
    np.testing.assert_array_equal(stats[1]["return_sum"][..., 0], 0.5 * stats[0]["return_sum"][..., 0])
    np.testing.assert_array_equal(stats[1]["entropy"][..., 0], stats[0]["entropy"][..., 0])
    assert stats[0]["grad_norm"].shape == (1, 2, 4) and np.all(stats[0]["grad_norm"] > 0)
    with pytest.raises(ValueError, match="reward scale must be > 0"):
        transforms.scale_rewards(task, 0.0)


# --------------------------------------------------------------------------------- select / run


def test_select_ranks_by_mean_final_with_nan_and_divergence():
    final = np.array([[1.0, 2.0], [3.0, np.nan], [np.nan, np.nan], [4.0, 4.0]])
    assert evaluation.select(final) == 3
    diverged = np.array([[False, False], [False, False], [False, False], [True, False]])
    assert evaluation.select(final, diverged) == 1  # 3.0 (NaN left out) > 1.5; row 3 diverged
    assert evaluation.select(np.array([[2.0], [2.0]])) == 0  # ties: the first listed


def test_final_returns_tail_mean():
    curves = np.array([[np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]])
    np.testing.assert_allclose(evaluation.final_returns(curves, 0.2), [8.5])
    np.testing.assert_allclose(evaluation.final_returns(curves, 0.01), [9.0])  # at least one point


def test_evaluate_selects_on_selection_seeds_and_reports_disjoint_seeds():
    """α_lr = 40 learns chain/short, α_lr ≈ 0 keeps the uniform policy: 40 is chosen on the
    selection seeds, then only it is trained on the report seeds (the same lifetimes a runner
    gives for those seeds)."""
    task = envs.make("chain/short")
    protocol = evaluation.Protocol(selection_seeds=(0, 1), report_seeds=(100, 101, 102))
    budget = evaluation.Budget(num_updates=60, num_envs=8)
    candidates = {"random": a2c_hyper(1e-9), "learns": a2c_hyper(40.0)}
    done = []
    result = evaluation.evaluate(task, a2c.A2C(), {}, candidates, protocol, budget,
                                 updates_per_chunk=25, progress=done.append)
    assert sum(done) == evaluation.work(2, protocol, budget) == (2 * 2 + 3) * 60
    assert result.candidates == ("random", "learns")
    assert result.chosen == "learns" and float(result.chosen_hyper.learning_rate) == 40.0
    assert result.selection_final.shape == (2, 2) and result.report_final.shape == (3,)
    assert result.report_curves.shape == (3, 60)
    table = result.selection_table
    assert table["learns"] > table["random"] + 0.3, table
    assert not result.selection_diverged.any() and not result.report_diverged.any()
    np.testing.assert_array_equal(result.env_steps, budget.env_steps_per_point)
    # Report seeds = the chosen setting on seeds 100..102, trained independently.
    runner = evaluation.LifetimeRunner(task, a2c.A2C(), budget, lifetimes_per_call=1)
    curves, _ = runner.curves({}, [a2c_hyper(40.0)], [101], curve_window=protocol.curve_window)
    np.testing.assert_array_equal(curves[0, 0], result.report_curves[1])
    summary = result.summary()
    assert summary.n == 3 and summary.low <= summary.mean <= summary.high


def test_single_candidate_skips_selection_and_runs_under_debug_nans():
    """One candidate: no selection lifetimes. Under `launch.train --config.debug` (NaN checks
    on), the curves' by-design NaN before a lifetime's first episode must not raise."""
    task = envs.make("chain/short")
    protocol = evaluation.Protocol(selection_seeds=(0,), report_seeds=(100, 101))
    budget = evaluation.Budget(num_updates=5, num_envs=1, unroll_length=4)
    done = []
    with jax.debug_nans(True):
        result = evaluation.evaluate(task, a2c.A2C(), {}, {"only": a2c_hyper()}, protocol, budget,
                                     progress=done.append)
    assert sum(done) == 2 * 5 == evaluation.work(1, protocol, budget)
    assert result.chosen == "only" and np.isnan(result.selection_final).all()
    assert np.isnan(result.report_curves[:, 0]).all()  # 4 steps < the shortest chain (5)


# ----------------------------------------------------------------------------------- statistics


def test_bootstrap_two_values_by_hand():
    """Seeds [0, 1]: resampled means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so the 95%
    interval is [0, 1] and the 40% interval (quantiles 0.3 and 0.7) is [0.5, 0.5]."""
    wide = evaluation.bootstrap_mean(np.array([0.0, 1.0]), n_bootstrap=4000, confidence=0.95)
    assert (wide.mean, wide.low, wide.high, wide.n) == (0.5, 0.0, 1.0, 2)
    narrow = evaluation.bootstrap_mean(np.array([0.0, 1.0]), n_bootstrap=4000, confidence=0.4)
    assert (narrow.low, narrow.high) == (0.5, 0.5)


def test_constant_positive_difference_is_a_win_even_when_rules_overlap():
    b = np.random.default_rng(0).normal(5.0, 2.0, size=8)
    a = b + 0.5  # every seed 0.5 better, far less than the spread across seeds
    diff = evaluation.paired_difference(a, b)
    assert diff.low > 0 and diff.low <= diff.mean <= diff.high
    np.testing.assert_allclose([diff.mean, diff.low, diff.high], 0.5)
    assert evaluation.verdict(diff) == "win"
    ia, ib = evaluation.bootstrap_mean(a), evaluation.bootstrap_mean(b)
    assert ia.low < ib.high  # unpaired intervals overlap: pairing is what resolves it
    assert evaluation.verdict(evaluation.paired_difference(b, a)) == "loss"


def test_symmetric_noise_is_a_tie():
    diff = np.array([-1.0, 1.0, -2.0, 2.0, -0.5, 0.5, -3.0, 3.0])
    interval = evaluation.paired_difference(diff, np.zeros(8))
    assert interval.mean == 0.0 and interval.low < 0 < interval.high
    assert evaluation.verdict(interval) == "tie"


def test_interval_contains_the_mean_and_is_deterministic():
    values = np.random.default_rng(1).exponential(3.0, size=10)
    first = evaluation.bootstrap_mean(values, seed=7)
    assert first.low <= np.mean(values) <= first.high and first.mean == pytest.approx(np.mean(values))
    assert first.high - first.low > 0
    again = evaluation.bootstrap_mean(values, seed=7)
    assert (again.low, again.high) == (first.low, first.high)
    other = evaluation.bootstrap_mean(values, seed=8)
    assert (other.low, other.high) != (first.low, first.high)
    wider = evaluation.bootstrap_mean(values, seed=7, confidence=0.99)
    assert wider.low < first.low and wider.high > first.high


def test_bootstrap_leaves_out_nan_and_handles_curves():
    interval = evaluation.bootstrap_mean(np.array([1.0, np.nan, 3.0]))
    assert interval.mean == 2.0 and interval.n == 2
    assert evaluation.verdict(evaluation.bootstrap_mean(np.array([np.nan, np.nan]))) == "n/a"
    curves = np.array([[np.nan, 1.0, 2.0], [np.nan, 3.0, 2.0]])  # [S=2, U=3]
    band = evaluation.bootstrap_mean(curves, n_bootstrap=1000)
    assert np.isnan(band.mean[0]) and np.isnan(band.low[0])
    np.testing.assert_allclose(band.mean[1:], [2.0, 2.0])
    np.testing.assert_allclose([band.low[1], band.high[1]], [1.0, 3.0])
    np.testing.assert_allclose([band.low[2], band.high[2]], [2.0, 2.0])


def _fake_evaluation(task="chain/short", report_seeds=(100, 101), final=(1.0, 2.0)):
    protocol = evaluation.Protocol(selection_seeds=(0,), report_seeds=report_seeds)
    return evaluation.Evaluation(
        task=task, protocol=protocol, candidates=("x",), candidate_hypers=(a2c_hyper(),),
        selection_final=np.full((1, 1), np.nan), selection_diverged=np.zeros((1, 1), bool),
        chosen="x", chosen_hyper=a2c_hyper(), report_final=np.asarray(final),
        report_curves=np.zeros((len(final), 3)), report_diverged=np.zeros(len(final), bool),
        env_steps=np.arange(1, 4))


def test_compare_pairs_only_matching_evaluations():
    result = evaluation.compare(_fake_evaluation(final=(2.0, 3.0)), _fake_evaluation(final=(1.0, 2.0)))
    assert result.verdict == "win" and result.difference.mean == 1.0
    assert (result.a.mean, result.b.mean) == (2.5, 1.5)
    with pytest.raises(ValueError, match="report seeds"):
        evaluation.compare(_fake_evaluation(), _fake_evaluation(report_seeds=(100, 102)))
    with pytest.raises(ValueError, match="different tasks"):
        evaluation.compare(_fake_evaluation(), _fake_evaluation(task="chain/long"))
