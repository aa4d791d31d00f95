"""Tests of the LPG analyses (experiments/analysis_common.py and analysis_y_*.py, Figs. 4–6):
the exact grid MDP against Monte-Carlo rollouts of the environment and a hand-computed MDP, the KL
of Fig. 6, and each script end to end on tiny settings.

The scripts run as subprocesses (their absl flags would clash in one process with other
programs'), all three started together by the first script test; those tests are `slow` (about
1–2 min on 2 cores): run them with `pytest -m slow tests/experiments/test_analyses.py`.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from experiments import analysis_common as ac
from lpg import training
from lpg.rules import lpg as lpg_rule

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_RUN = ["--task=tabular/sparse", "--num_envs=8", "--unroll_length=5", "--min_visits=1"]  # sparse: 676 states
SCRIPTS = {
    "analysis_y_grid": ["--updates=4", *TINY_RUN],
    "analysis_y_regression": ["--updates=4", "--train_updates=2", "--snapshot_every=2",
                              "--num_layouts=2", "--mlp_steps=20", *TINY_RUN],
    "analysis_y_convergence": ["--updates=4", "--snapshot_every=2", "--num_layouts=2", *TINY_RUN],
}


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """{script: (workdir, Popen)}: every script started once, in parallel, on tiny settings."""
    runs = {}
    for script, args in SCRIPTS.items():
        workdir = str(tmp_path_factory.mktemp(script))
        runs[script] = workdir, subprocess.Popen(
            [sys.executable, "-m", f"experiments.{script}", f"--workdir={workdir}", *args], cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield runs
    for _, proc in runs.values():
        if proc.poll() is None:
            proc.kill()


def _finished(runs, script):
    workdir, proc = runs[script]
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return workdir, stdout

# A 3×4 grid whose 3 objects exercise every part of the dynamics: reward signs, partial
# termination and respawn probabilities, a wall.
TINY = envs.gridworld_task("test/analysis_tiny", height=3, width=4, walls=[(1, 1)], max_steps=10_000,
                           objects=[(1.0, 0.0, 0.3), (-1.0, 0.5, 0.2), (0.5, 0.2, 1.0)])


def _monte_carlo_start_value(env, params, policy, discount, key, episodes=4000, horizon=90):
    """Mean discounted return from reset under `policy` [S, A], by running the environment."""
    log_pi = jnp.log(jnp.maximum(jnp.asarray(policy), 1e-30))

    def episode(key):
        reset_key, run_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)

        def step(carry, step_key):
            obs, state, alive, scale, total = carry
            act_key, env_key = jax.random.split(step_key)
            action = jax.random.categorical(act_key, log_pi[obs])
            obs, state, reward, terminated, _, _ = env.step(env_key, state, action, params)
            total = total + alive * scale * reward
            alive = alive * (1.0 - terminated)
            return (obs, state, alive, scale * discount, total), None

        init = (obs, state, jnp.float32(1.0), jnp.float32(1.0), jnp.float32(0.0))
        (_, _, _, _, total), _ = jax.lax.scan(step, init, jax.random.split(run_key, horizon))
        return total

    return np.asarray(jax.jit(jax.vmap(episode))(jax.random.split(key, episodes)))


@pytest.mark.parametrize("collect_actions", [False, True])
def test_exact_policy_evaluation_matches_monte_carlo(collect_actions):
    env = TINY.env
    params = env.make_params(object_cells=[0, 6, 11], collect_actions=collect_actions)
    mdp = ac.grid_mdp(env, params)
    np.testing.assert_allclose(mdp.next_probs.sum(-1), 1.0, atol=1e-9)
    rng = np.random.default_rng(0)
    policy = rng.dirichlet(np.ones(int(mdp.action_mask.sum())), size=mdp.num_states)
    policy = np.pad(policy, [(0, 0), (0, 18 - policy.shape[1])])  # invalid actions: probability 0
    discount = 0.9
    # Half optimal, half random: a value far from 0 (so the check has power), every action used.
    policy = 0.5 * policy + 0.5 * ac.optimal_policy(mdp, discount)[0]
    exact = ac.evaluate_policy(mdp, policy, [discount])[0][mdp.start_states].mean()
    returns = _monte_carlo_start_value(env, params, policy, discount, jax.random.key(1))
    stderr = returns.std() / np.sqrt(returns.size)
    assert abs(exact - returns.mean()) < 4 * stderr + 1e-3, (exact, returns.mean(), stderr)
    assert abs(exact) > 10 * stderr  # the check has power: the value is far from 0


def test_hand_computed_value_and_optimal_policy():
    # One object [r=1, terminate always] right of the agent's only start cell on a 1×2 grid:
    # stepping onto it pays 1 and ends the episode, so V*(start) = 1 and V(uniform) solves
    # V = (1/9)·1 + (8/9)·γ·V (the 8 other moves leave the agent in place).
    task = envs.gridworld_task("test/analysis_1x2", height=1, width=2, objects=[(1.0, 1.0, 0.0)],
                               max_steps=100)
    params = task.env.make_params(object_cells=[1], collect_actions=False)
    mdp = ac.grid_mdp(task.env, params)
    (start,) = mdp.start_states
    uniform = np.broadcast_to(mdp.action_mask / 9.0, mdp.rewards.shape)
    gamma = 0.9
    v = ac.evaluate_policy(mdp, uniform, [gamma])[0]
    assert v[start] == pytest.approx((1 / 9) / (1 - 8 / 9 * gamma))
    policy, q = ac.optimal_policy(mdp, gamma)
    assert np.argmax(policy[start]) == 5 and q[start, 5] == pytest.approx(1.0)  # move right


def test_kl_is_zero_for_identical_y_and_positive_for_two_random_inits():
    rule = lpg_rule.LPG(hidden_size=8)
    learner = ac.Learner(rule, training.build_agent(TINY, rule.output_spec))
    num_states = TINY.env.num_states
    logits = jnp.zeros((num_states, 18))
    y0, y0_again, y1 = (np.asarray(ac.init_learner_state(learner, jax.random.key(k), logits, y_init_scale=1.0)
                                   .params["params"]["y"]) for k in (0, 0, 1))
    states = np.arange(num_states)
    assert ac.mean_kl(y0, y0_again, states) == 0.0
    assert ac.mean_kl(y0, y1, states) > 0.3  # E ≈ 1 for N(0, 1) logits
    weights = np.zeros(num_states)
    weights[:3] = 1.0  # weighted mean = mean over the first 3 states
    assert ac.mean_kl(y0, y1, states, weights) == pytest.approx(ac.mean_kl(y0, y1, states[:3]))


@pytest.mark.slow  # three script subprocesses: ~1-2 min on 2 cores
def test_y_grid_script_writes_figure_and_numbers(script_runs):
    workdir, stdout = _finished(script_runs, "analysis_y_grid")
    assert "corr(y_k, V^π)" in stdout
    summary = json.load(open(os.path.join(workdir, "y_grid.json")))
    assert len(summary["y_value_correlation"]) == 30 and summary["updates"] == 4
    assert os.path.getsize(os.path.join(workdir, "y_grid.png")) > 0
    rows = open(os.path.join(workdir, "y_grid.csv")).read().splitlines()
    assert len(rows) == 1 + 13 * 13  # header + one row per cell


@pytest.mark.slow
def test_y_regression_script_writes_table_for_every_discount_and_predictor(script_runs):
    workdir, stdout = _finished(script_runs, "analysis_y_regression")
    assert "R² from y" in stdout
    summary = json.load(open(os.path.join(workdir, "y_regression.json")))
    final = summary["final"]
    assert {(r["gamma"], r["predictor"]) for r in final} == {
        (g, p) for g in (0.995, 0.99, 0.95, 0.9)
        for p in ("y (LPG)", "TD(λ) value", "TD(λ) converged (exact V^π at γ̄)")}
    assert all(np.isfinite(r["mse"]) for r in final)
    # The converged-TD predictor is V^π at γ̄ = 0.995 itself: it regresses its own γ almost exactly.
    limit = {r["gamma"]: r["r2"] for r in final if r["predictor"].startswith("TD(λ) converged")}
    assert limit[0.995] > 0.9, limit
    assert summary["states_fit"] > 0 and summary["states_test"] > 0
    assert os.path.getsize(os.path.join(workdir, "y_regression.png")) > 0
    csv_rows = open(os.path.join(workdir, "y_regression.csv")).read().splitlines()
    assert len(csv_rows) == 1 + 3 * 4 * 2 + 4  # snapshots 0, 2, 4 × 4 γ × 2 predictors + the TD limit


@pytest.mark.slow
def test_y_convergence_script_starts_from_different_y(script_runs):
    workdir, stdout = _finished(script_runs, "analysis_y_convergence")
    assert "KL(y0‖y1)" in stdout
    summary = json.load(open(os.path.join(workdir, "y_convergence.json")))
    assert summary["kl_initial_mean"] > 0.3  # two N(0, 1) inits: the check can fail
    assert np.isfinite(summary["kl_final_mean"])
    assert os.path.getsize(os.path.join(workdir, "y_convergence.png")) > 0
    assert len(open(os.path.join(workdir, "y_convergence.csv")).read().splitlines()) == 1 + 3
