"""Tests of MetaGenRL: the learned objective (lpg/rules/metagenrl.py) and its population
meta-trainer (lpg/meta/metagenrl.py): the second-order meta-gradient against finite differences,
the backward LSTM's causality and episode resets, one meta-step, and config validation."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from lpg import replay
from lpg import td3
from lpg.meta import metagenrl as meta_lib
from lpg.rules import metagenrl

TINY_OBJECTIVE = metagenrl.Objective(lstm_size=4, action_layers=1, action_filters=4, output_bound=5.0)
TINY_TD3 = td3.TD3(hidden=(8,), num_envs=1, buffer_capacity=64, batch_size=4, warmup_steps=12)


def _episodes(key, shape, obs_dim, action_dim, dtype):
    """Random truncated episodes: `td3.Transition` leaves [*shape, ...] (shape = [K, N, T])."""
    k_obs, k_next, k_act, k_rew, k_term, k_trunc = jax.random.split(key, 6)
    return td3.Transition(
        obs=jax.random.normal(k_obs, shape + (obs_dim,), dtype),
        action=jax.random.uniform(k_act, shape + (action_dim,), dtype, -1.0, 1.0),
        reward=jax.random.normal(k_rew, shape, dtype),
        next_obs=jax.random.normal(k_next, shape + (obs_dim,), dtype),
        terminated=jax.random.bernoulli(k_term, 0.2, shape),
        truncated=jax.random.bernoulli(k_trunc, 0.1, shape))


def test_meta_gradient_matches_central_finite_differences():
    """∇_α −Q(s, π_φ'(s)), φ' after K = 2 inner steps on L_α, against (f(α+ε) − f(α−ε)) / 2ε."""
    with jax.enable_x64(True):
        obs_dim, action_dim = 3, 2
        nets = td3.make_networks(td3.TD3(hidden=(8,)), action_dim)
        k_actor, k_critic, k_alpha, k_data = jax.random.split(jax.random.key(0), 4)
        to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)
        actor = to64(nets.actor.init(k_actor, jnp.zeros((obs_dim,))))
        critic = to64(nets.critic.init(k_critic, jnp.zeros((obs_dim,)), jnp.zeros((action_dim,))))
        alpha = to64(TINY_OBJECTIVE.init_params(k_alpha))
        batches = _episodes(k_data, (2, 3, 4), obs_dim, action_dim, jnp.float64)  # K=2, N=3, T=4

        # One compiled function for both: the losses at α ± ε come from the same executable.
        value_and_grad = jax.jit(jax.value_and_grad(lambda a: metagenrl.meta_loss(
            TINY_OBJECTIVE, a, nets, actor, critic, batches, 0.5)))
        loss = lambda a: value_and_grad(a)[0]
        value, grad = value_and_grad(alpha)
        assert value.dtype == jnp.float64

        flat, unravel = jax.flatten_util.ravel_pytree(alpha)
        flat_grad, _ = jax.flatten_util.ravel_pytree(grad)
        assert flat.dtype == jnp.float64 and float(jnp.linalg.norm(flat_grad)) > 0
        # A few entries spread over the tree: the action embedding, the LSTM and the output layer.
        names = jax.tree_util.tree_flatten_with_path(alpha)[0]
        offsets = np.cumsum([0] + [leaf.size for _, leaf in names])
        indices = [int(offsets[i]) for i in range(len(names))][::max(1, len(names) // 5)] + [flat.size - 2]
        eps = 1e-6
        for i in indices:
            bump = jnp.zeros_like(flat).at[i].set(eps)
            numeric = (loss(unravel(flat + bump)) - loss(unravel(flat - bump))) / (2 * eps)
            np.testing.assert_allclose(flat_grad[i], numeric, rtol=1e-5, atol=1e-9,
                                       err_msg=f"meta-gradient entry {i}")
        assert any(abs(float(flat_grad[i])) > 1e-6 for i in indices)


@pytest.fixture(scope="module")
def objective_outputs():
    """l [T] of one random truncated episode, as a jitted function of its inputs."""
    network = TINY_OBJECTIVE.network
    params = TINY_OBJECTIVE.init_params(jax.random.key(1))
    fn = jax.jit(lambda scalars, actions, end: network.apply(params, scalars, actions, end))
    k_s, k_a = jax.random.split(jax.random.key(2))
    length = 6
    scalars = jax.random.normal(k_s, (length, metagenrl.NUM_SCALAR_INPUTS))
    actions = jax.random.uniform(k_a, (length, 2, 2), minval=-1, maxval=1)
    return fn, scalars, actions, jnp.zeros((length,), bool)


def test_backward_lstm_output_at_t_depends_only_on_steps_t_to_T(objective_outputs):
    fn, scalars, actions, no_end = objective_outputs
    base = np.asarray(fn(scalars, actions, no_end))
    t = 3
    for s in range(scalars.shape[0]):
        for perturbed in (
            fn(scalars.at[s, 0].add(1.0), actions, no_end),  # the reward r_s
            fn(scalars, actions.at[s, 1, 1].add(0.5), no_end),  # π(s_s) in one action dimension
        ):
            changed = not np.allclose(np.asarray(perturbed)[t], base[t], atol=1e-7)
            assert changed == (s >= t), f"output at t={t} after perturbing step s={s}: changed={changed}"


def test_episode_end_blocks_information_from_the_next_episode(objective_outputs):
    fn, scalars, actions, no_end = objective_outputs
    end = no_end.at[2].set(True)  # the episode ends at step 2; steps 3.. are another episode
    base = np.asarray(fn(scalars, actions, end))
    for s in (3, 5):
        perturbed = np.asarray(fn(scalars.at[s, 0].add(1.0), actions, end))
        np.testing.assert_array_equal(perturbed[:3], base[:3])  # the ended episode is unaffected
        assert not np.allclose(perturbed[s], base[s])
        # Without the boundary the same perturbation reaches back to step 0.
        assert not np.allclose(np.asarray(fn(scalars.at[s, 0].add(1.0), actions, no_end))[0],
                               np.asarray(fn(scalars, actions, no_end))[0])
    # Inside the ended episode, information still flows backward: step 2 reaches step 0.
    assert not np.allclose(np.asarray(fn(scalars.at[2, 0].add(1.0), actions, end))[0], base[0])


def test_output_is_bounded_by_eta():
    network = metagenrl.Objective(lstm_size=4, action_layers=1, action_filters=4, output_bound=0.01).network
    params = network.init(jax.random.key(0), jnp.zeros((3, 4)), jnp.zeros((3, 1, 2)), jnp.zeros((3,), bool))
    params = jax.tree.map(lambda x: 100.0 * x, params)  # huge raw outputs
    out = network.apply(params, 10.0 * jnp.ones((3, 4)), jnp.ones((3, 1, 2)), jnp.zeros((3,), bool))
    assert np.all(np.abs(np.asarray(out)) <= 0.01) and np.any(np.abs(np.asarray(out)) > 0.009)


def test_policy_gradient_flows_only_through_the_policy_action():
    """∇_φ L_α is zero if L_α ignores the policy action (V carries no gradient to φ)."""
    obs_dim, action_dim = 3, 1
    nets = td3.make_networks(td3.TD3(hidden=(8,)), action_dim)
    actor = nets.actor.init(jax.random.key(0), jnp.zeros((obs_dim,)))
    critic = nets.critic.init(jax.random.key(1), jnp.zeros((obs_dim,)), jnp.zeros((action_dim,)))
    alpha = TINY_OBJECTIVE.init_params(jax.random.key(2))
    episodes = _episodes(jax.random.key(3), (2, 4), obs_dim, action_dim, jnp.float32)
    grad_fn = jax.jit(jax.grad(TINY_OBJECTIVE.loss, argnums=2), static_argnums=(1,))
    grads = grad_fn(alpha, nets, actor, critic, episodes)
    assert float(jax.flatten_util.ravel_pytree(grads)[0].__abs__().max()) > 0
    # Zero the action embedding's weights on π(s_t) (input row 1): φ no longer matters.
    blind = jax.tree_util.tree_map_with_path(
        lambda path, x: x.at[1].set(0.0) if "ActionEmbedding" in jax.tree_util.keystr(path)
        and "kernel" in jax.tree_util.keystr(path) else x, alpha)
    grads = grad_fn(blind, nets, actor, critic, episodes)
    assert float(jax.flatten_util.ravel_pytree(grads)[0].__abs__().max()) == 0.0


@pytest.fixture(scope="module")
def pendulum():
    return envs.make("gymnax/Pendulum-v1")


def _trainer(groups, **overrides):
    fields = dict(sequence_length=4, sequence_batch_size=3, inner_steps=2, ddpg_anneal_steps=0,
                  inner_learning_rate=0.1)
    fields.update(overrides)
    return meta_lib.MetaGenRLTrainer(TINY_OBJECTIVE, tuple(groups), TINY_TD3, **fields)


def _changed(before, after):
    return any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_one_meta_step_is_finite_and_changes_alpha_actors_and_critics(pendulum):
    trainer = _trainer([meta_lib.AgentGroup(pendulum, 2)])
    state = trainer.jit_init()(jax.random.key(0))
    before = jax.tree.map(np.asarray, (state.meta_params, state.agents[0].actor.params,
                                       state.agents[0].critic.params))
    new_state, metrics = trainer.compiled_step()(state)
    for value in jax.tree.leaves((new_state.meta_params, new_state.agents, metrics["meta_loss"],
                                  metrics["meta_grad_norm"])):
        if jnp.issubdtype(value.dtype, jnp.floating):
            assert np.isfinite(np.asarray(value)).all()
    assert int(new_state.step) == 1 and int(new_state.skipped_updates) == 0
    # No resets at agent_lifetime 0: both buffers hold the warm-up plus this step's transitions.
    per_step = TINY_TD3.critic_steps_per_actor_step * TINY_TD3.num_envs
    assert np.asarray(jax.vmap(replay.size)(new_state.agents[0].buffer)).tolist() == [
        TINY_TD3.warmup_steps + per_step] * 2
    assert float(metrics["meta_grad_norm"]) > 0
    alpha, actors, critics = before
    assert _changed(alpha, new_state.meta_params)
    # Every agent's policy and critics moved (not just the population as a whole).
    for i in range(2):
        pick = lambda tree: jax.tree.map(lambda x: x[i], tree)
        assert _changed(pick(actors), pick(new_state.agents[0].actor.params))
        assert _changed(pick(critics), pick(new_state.agents[0].critic.params))
    # Every leaf of α moves (no silently dead part of the objective).
    for path, (old, new) in zip(jax.tree_util.tree_flatten_with_path(alpha)[0],
                                zip(jax.tree.leaves(alpha), jax.tree.leaves(new_state.meta_params))):
        assert not np.array_equal(old, np.asarray(new)), f"α leaf {jax.tree_util.keystr(path[0])} unchanged"


def test_agents_are_reset_round_robin_to_fresh_agents(pendulum):
    """agent_lifetime 4 over 2 agents: one reset every 2 meta-steps, agent 0 after step 2, agent 1
    after step 4; a reset agent is exactly a fresh, warmed-up agent, the other one is untouched."""
    trainer = _trainer([meta_lib.AgentGroup(pendulum, 2)], agent_lifetime=4)
    assert trainer.reset_interval(trainer.groups[0]) == 2
    state = trainer.jit_init()(jax.random.key(0))
    step = trainer.compiled_step()
    sizes, actors = [], []
    for _ in range(4):
        state, _ = step(state)
        sizes.append(np.asarray(jax.vmap(replay.size)(state.agents[0].buffer)).tolist())
        actors.append(jax.tree.map(np.asarray, state.agents[0].actor.params))
    warm, per_step = TINY_TD3.warmup_steps, TINY_TD3.critic_steps_per_actor_step * TINY_TD3.num_envs
    # Buffers: both grow by 2 a step; agent 0 restarts from the warm-up after step 2, agent 1 after 4.
    assert sizes == [[warm + per_step] * 2, [warm, warm + 2 * per_step],
                     [warm + per_step, warm + 3 * per_step], [warm + 2 * per_step, warm]]
    fresh = jax.jit(trainer.fresh_agent, static_argnums=0)(0, state.key, 4)
    for new, want in zip(jax.tree.leaves(state.agents[0].actor.params), jax.tree.leaves(fresh.actor.params)):
        np.testing.assert_array_equal(np.asarray(new)[1], np.asarray(want)[0])
    assert _changed(actors[2], actors[3])  # agent 0 kept learning after its reset
    with pytest.raises(ValueError, match="agent_lifetime=1 must be 0 or at least the 2 agents"):
        _trainer([meta_lib.AgentGroup(pendulum, 2)], agent_lifetime=1)


@pytest.mark.slow
def test_groups_with_different_shapes_share_alpha(pendulum):
    """Pendulum (obs 3) and MountainCarContinuous (obs 2) agents in one meta-step."""
    car = envs.make("gymnax/MountainCarContinuous-v0")
    trainer = _trainer([meta_lib.AgentGroup(pendulum, 1), meta_lib.AgentGroup(car, 1)],
                       ddpg_anneal_steps=4)
    state = trainer.jit_init()(jax.random.key(0))
    assert state.agents[0].carry.obs.shape[-1] == 3 and state.agents[1].carry.obs.shape[-1] == 2
    step = trainer.compiled_step()
    alpha = jax.tree.map(np.asarray, state.meta_params)  # the step donates `state`
    new_state, metrics = step(state)
    assert np.isfinite(float(metrics["meta_loss"])) and float(metrics["ddpg_weight"]) == 1.0
    assert _changed(alpha, new_state.meta_params)
    new_state, metrics = step(new_state)
    assert float(metrics["ddpg_weight"]) == 0.5
    assert {"gymnax/Pendulum-v1/critic_loss", "gymnax/MountainCarContinuous-v0/critic_loss"} <= set(metrics)


@pytest.mark.parametrize("bad, match", [
    (dict(lstm_size=0), "lstm_size.*0"),
    (dict(action_filters=1), "action_filters.*1"),
    (dict(output_bound=float("inf")), "output_bound.*inf"),
    (dict(reduction="max"), "reduction.*'max'"),
])
def test_objective_config_is_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        metagenrl.Objective(**bad)


@pytest.mark.parametrize("bad, match", [
    (dict(inner_steps=0), "inner_steps.*0"),
    (dict(sequence_length=13), "sequence_length=13"),  # longer than the 12-step warm-up
    (dict(sequence_batch_size=2.5), "sequence_batch_size.*2.5"),
    (dict(discount=1.0), "discount.*1.0"),
    (dict(meta_learning_rate=-1.0), "meta_learning_rate.*-1.0"),
    (dict(ddpg_anneal_steps=-1), "ddpg_anneal_steps.*-1"),
    (dict(agent_lifetime=-3), "agent_lifetime.*-3"),
])
def test_trainer_config_is_validated(pendulum, bad, match):
    with pytest.raises(ValueError, match=match):
        _trainer([meta_lib.AgentGroup(pendulum, 1)], **bad)


def test_agent_group_is_validated(pendulum):
    with pytest.raises(ValueError, match="num_agents.*0"):
        meta_lib.AgentGroup(pendulum, 0)


_SHARDED_SCRIPT = r"""
import json, sys
import jax, numpy as np
import envs
from lpg import td3
from lpg.meta import metagenrl as meta_lib, sharding
from lpg.rules import metagenrl

assert len(jax.devices()) == 4
objective = metagenrl.Objective(lstm_size=4, action_layers=1, action_filters=4, output_bound=5.0)
config = td3.TD3(hidden=(8,), num_envs=1, buffer_capacity=64, batch_size=4, warmup_steps=12)
results = {}
for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
    trainer = meta_lib.MetaGenRLTrainer(
        objective, (meta_lib.AgentGroup(envs.make("gymnax/Pendulum-v1"), 4),), config,
        sequence_length=4, sequence_batch_size=3, inner_steps=2, ddpg_anneal_steps=2,
        inner_learning_rate=0.1, agent_lifetime=4, mesh=sharding.population_mesh(devices))
    state = trainer.jit_init()(jax.random.key(0))
    step = trainer.jit_step()
    for _ in range(3):
        state, metrics = step(state)
    results[name] = dict(
        alpha=[np.asarray(x).tolist() for x in jax.tree.leaves(state.meta_params)],
        actors=[np.asarray(x).tolist() for x in jax.tree.leaves(state.agents[0].actor.params)],
        critics=[np.asarray(x).tolist() for x in jax.tree.leaves(state.agents[0].critic.params)],
        shard_rows=[s.data.shape[0] for s in jax.tree.leaves(state.agents[0].actor.params)[0].addressable_shards],
        meta_loss=float(metrics["meta_loss"]))
json.dump(results, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_one_and_four_devices_give_the_same_meta_training(tmp_path):
    """Also with resets (agent_lifetime 4 over 4 agents: agents 0, 1, 2 replaced after steps 1–3,
    each in the slot of its global index, on whichever device holds it)."""
    import os, subprocess, sys, json  # pylint: disable=g-import-not-at-top,multiple-imports
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=repo,
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = str(tmp_path / "runs.json")
    proc = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, out], env=env, cwd=repo,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out) as f:
        runs = json.load(f)
    assert runs["one"]["shard_rows"] == [4] and runs["four"]["shard_rows"] == [1, 1, 1, 1]
    for part in ("alpha", "actors", "critics"):
        for a, b in zip(runs["one"][part], runs["four"][part]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5, err_msg=part)
    np.testing.assert_allclose(runs["one"]["meta_loss"], runs["four"]["meta_loss"], rtol=1e-4)
