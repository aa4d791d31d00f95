"""Tests of lpg/offpolicy_evaluation.py: paired seeds with the on-policy protocol, position-free
lifetimes, the budget's checks, and the frozen MetaGenRL objective training the policy."""

import jax
import numpy as np
import pytest

import envs
from lpg import evaluation
from lpg import offpolicy_evaluation as ope
from lpg import td3
from lpg import training
from lpg.rules import a2c
from lpg.rules import metagenrl

TASK = envs.make("gymnax/random_pendulum")  # physics (mass, length, ...) drawn per lifetime
CONFIG = td3.TD3(hidden=(8,), buffer_capacity=512, batch_size=8, warmup_steps=20)
OBJECTIVE = metagenrl.Objective(lstm_size=4, action_layers=1, action_filters=2)
# 20 warm-up + 2 points × 100 iterations × 2 steps: each point sees one 200-step episode end.
BUDGET = ope.budget_for(CONFIG, 420, 2)


def test_budget_checks_and_points():
    assert BUDGET.iterations_per_point == 100
    np.testing.assert_array_equal(BUDGET.env_steps_per_point, [220, 420])
    with pytest.raises(ValueError, match="env_steps=421 .* multiple of points × steps per iteration"):
        ope.budget_for(CONFIG, 421, 2)
    with pytest.raises(ValueError, match="kind must be one of"):
        ope.OffPolicyLearner("sac", CONFIG)
    with pytest.raises(ValueError, match="objective is required"):
        ope.OffPolicyLearner("metagenrl", CONFIG)


def test_seed_i_draws_the_same_physics_as_the_on_policy_protocol():
    seeds = (100, 101)
    states = ope.init_lifetimes(ope.OffPolicyLearner("td3", CONFIG), TASK, seeds, base_seed=7)
    init_keys, _ = evaluation.lifetime_keys(7, seeds)
    rule = a2c.A2C()
    agent = training.build_agent(TASK, rule.output_spec)
    for i, key in enumerate(init_keys):
        on_policy = training.init_lifetime(TASK, agent, key, 2, rule=rule).env_params
        # Equal up to jit-vs-eager rounding of the sampled physics.
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-6), states.env_params,
                     on_policy)
    differs = jax.tree.map(lambda x: bool(np.any(x[0] != x[1])), states.env_params)
    assert any(jax.tree.leaves(differs)), "the two seeds should draw different physics"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["td3", "metagenrl"])
def test_a_lifetime_does_not_depend_on_its_batch(kind):
    learner = ope.OffPolicyLearner(kind, CONFIG, OBJECTIVE if kind == "metagenrl" else None,
                                   sequence_length=5, sequence_batch_size=2)
    alpha = OBJECTIVE.init_params(jax.random.key(1)) if kind == "metagenrl" else None
    hypers = [td3.make_hyper(1e-3), td3.make_hyper(3e-4)]
    curves, diverged = ope.run_lifetimes(learner, TASK, alpha, hypers, (3, 5), BUDGET)
    alone, _ = ope.run_lifetimes(learner, TASK, alpha, hypers[1:], (5,), BUDGET)
    assert curves.shape == (2, 2, 2) and not diverged.any() and np.isfinite(curves).all()
    np.testing.assert_allclose(alone[0, 0], curves[1, 1], rtol=1e-5)
    assert not np.allclose(curves[0, 1], curves[1, 1])  # the learning rate matters


def test_the_frozen_objective_not_td3_trains_the_policy():
    """Same seed, same critic learning: the policies differ between TD3 and L_α, and between two
    objectives α."""
    def actor_after(kind, alpha):
        learner = ope.OffPolicyLearner(kind, CONFIG, OBJECTIVE if alpha is not None else None,
                                       sequence_length=5, sequence_batch_size=2)
        state = ope.init_lifetimes(learner, TASK, (0,), base_seed=0)
        block = ope._block_fn(learner, TASK, 3)  # pylint: disable=protected-access
        hyper = jax.tree.map(lambda x: np.asarray(x, np.float32)[None], td3.make_hyper(1e-3))
        return jax.flatten_util.ravel_pytree(block(alpha, state, hyper)[0].actor.params)[0]

    import jax.flatten_util  # pylint: disable=g-import-not-at-top
    td3_actor = actor_after("td3", None)
    first = actor_after("metagenrl", OBJECTIVE.init_params(jax.random.key(1)))
    second = actor_after("metagenrl", OBJECTIVE.init_params(jax.random.key(2)))
    assert not np.allclose(td3_actor, first) and not np.allclose(first, second)


@pytest.mark.slow  # 29 s; selection is shared with on-policy evaluation (tests/lpg/test_evaluation.py)
def test_evaluate_selects_on_selection_seeds_and_reports_the_rest():
    """Also: selection seed 5's lifetime is the same alone as in the selection's batch of four."""
    protocol = evaluation.Protocol(selection_seeds=(3, 5), report_seeds=(100,), n_bootstrap=100)
    candidates = ope.learning_rate_candidates([1e-3, 3e-4], 0.99)
    learner = ope.OffPolicyLearner("td3", CONFIG)
    result = ope.evaluate(learner, TASK, None, candidates, protocol, BUDGET)
    assert result.candidates == ("α_lr=0.001", "α_lr=0.0003")
    best = int(np.argmax(result.selection_final.mean(axis=1)))
    assert result.chosen == result.candidates[best]
    assert not np.allclose(*result.selection_final)  # the learning rate matters
    assert result.report_curves.shape == (1, 2) and np.isfinite(result.report_curves).all()
    np.testing.assert_allclose(result.report_final, result.report_curves[:, -1])  # 10% of 2 points
    alone, _ = ope.run_lifetimes(learner, TASK, None, [result.chosen_hyper], (5,), BUDGET)
    np.testing.assert_allclose(alone[0, 0, -1], result.selection_final[best, 1], rtol=1e-5)
    np.testing.assert_array_equal(result.env_steps, [220, 420])
