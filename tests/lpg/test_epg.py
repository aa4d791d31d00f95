"""Tests of the EPG learned loss (lpg/rules/epg.py): the causal buffer (against a per-window strided
convolution written out by hand, and by perturbation), the buffer crossing rollouts, the memory
unit (trained by L_φ, carried within a lifetime, fresh at a new one), the reward-free loss, PPO
guidance at α ∈ {0, 1}, meta-gradients through two updates, discrete and tanh-Gaussian tasks,
configuration round trips."""

import dataclasses
import json

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from lpg import agent as agent_lib
from lpg import rules
from lpg import training
from lpg import types
from lpg.rules import epg
from lpg.rules import ppo

T, B, OBS, A = 10, 2, 4, 2  # CartPole's observation and action sizes
# N = 7 with kernel 3 / stride 2 reads every step of the window (no oldest step left over).
SMALL = dict(buffer_length=7, conv1_kernel=3, conv1_stride=2, conv1_channels=3, conv2_kernel=2,
             conv2_stride=1, conv2_channels=3, context_size=5, hidden_size=4, memory_size=4)
# Also the rule of the CartPole tests (one rule, so they share compilations).
RULE = epg.EPG(obs_size=OBS, action_size=A, discrete=True, num_envs=B, **SMALL)


def _hyper(alpha=0.0, lr=1e-3):
    f = jnp.float32
    return types.HyperParams(f(lr), f(0.99), f(0.01), f(0.5), f(0.95), rule={"pg_guidance": f(alpha)})


def _rollout(key, rule=RULE, num_steps=T):
    k = jax.random.split(key, 6)
    actions = (jax.random.randint(k[1], (num_steps, B), 0, rule.action_size) if rule.discrete
               else jax.random.uniform(k[1], (num_steps, B, rule.action_size), minval=-1, maxval=1))
    return types.Rollout(
        observations=jax.random.normal(k[0], (num_steps + 1, B, rule.obs_size)),
        next_observations=jax.random.normal(k[5], (num_steps, B, rule.obs_size)),
        actions=actions,
        rewards=jax.random.normal(k[2], (num_steps, B)),
        terminated=jax.random.bernoulli(k[3], 0.2, (num_steps, B)),
        truncated=jax.random.bernoulli(k[4], 0.1, (num_steps, B)),
        action_mask=jnp.ones((B, rule.action_size), bool) if rule.discrete else None,
        episode_returns=jnp.zeros((num_steps, B)))


def _agent_out(key, num_steps=T):
    k1, k2 = jax.random.split(key)
    return types.AgentOutput(logits=jax.random.normal(k1, (num_steps + 1, B, A)),
                             value=jax.random.normal(k2, (num_steps + 1, B)))


def _lived_state(rule, key):
    """A rule state in mid-lifetime: a full buffer of valid steps and non-trivial statistics."""
    k1, k2, k3 = jax.random.split(key, 3)
    state = rule.init_state(k1, None)
    history = jax.random.normal(k2, state.history.shape).at[..., -1].set(1.0)
    stats = epg.update_running_stats(
        state.input_stats, 2.0 + 3.0 * jax.random.normal(k3, (50, rule.num_normalised)))
    return state.replace(history=history, input_stats=stats)


@jax.jit
def _advance(phi, state, rollout, out, hyper):
    """RULE's targets, then its state after an update on `rollout`."""
    targets = RULE.targets(phi, state, rollout, out, jax.tree.map(lambda x: x[1:], out), hyper)
    return targets, RULE.update_state(phi, state, rollout, out, targets, hyper)


@pytest.fixture(scope="module")
def small():
    key = jax.random.key(0)
    phi = RULE.init_params(jax.random.fold_in(key, 0))
    state = _lived_state(RULE, jax.random.fold_in(key, 1))
    rollout = _rollout(jax.random.fold_in(key, 2))
    out = _agent_out(jax.random.fold_in(key, 3))
    losses = jax.jit(RULE.per_step_losses)
    return phi, state, rollout, out, losses


# ----------------------------------------------------------------------------- the loss network


def _reference_losses(rule, phi, sequence, step_inputs):
    """L_t by the definition: for each step and environment, the strided convolutions of the N-step
    window ending at t (right-aligned), written out with numpy."""
    p = jax.tree.map(np.asarray, phi["params"])
    leaky = lambda x: np.where(x >= 0, x, 0.01 * x)
    n = rule.buffer_length
    sequence, step_inputs = np.asarray(sequence), np.asarray(step_inputs)

    def conv(x, layer, kernel, stride):
        start = (len(x) - kernel) % stride  # right-aligned: the oldest leftover rows are unread
        return np.stack([leaky(np.einsum("kf,kfc->c", x[i:i + kernel], p[layer]["kernel"]) + p[layer]["bias"])
                         for i in range(start, len(x) - kernel + 1, stride)])

    out = np.zeros(step_inputs.shape[:2])
    for t in range(step_inputs.shape[0]):
        for b in range(step_inputs.shape[1]):
            window = sequence[t:t + n, b]  # steps t−N+1 .. t of the rollout
            h = conv(conv(window, "conv1", rule.conv1_kernel, rule.conv1_stride),
                     "conv2", rule.conv2_kernel, rule.conv2_stride)
            context = leaky(h.reshape(-1) @ p["context"]["kernel"] + p["context"]["bias"])
            hidden = leaky(np.concatenate([context, step_inputs[t, b]]) @ p["hidden"]["kernel"]
                           + p["hidden"]["bias"])
            out[t, b] = (hidden @ p["loss"]["kernel"])[0]  # no output bias (a dead constant)
    return out


@pytest.mark.parametrize("geometry", [
    {},  # N = 7, k 3 / s 2, k 2 / s 1: every step read
    dict(buffer_length=12, conv1_kernel=4, conv1_stride=3, conv2_kernel=2, conv2_stride=2),  # both left over
])
def test_loss_is_the_strided_convolution_of_each_window(small, geometry):
    phi, state, rollout, out, _ = small
    rule = dataclasses.replace(RULE, **geometry)
    if geometry:
        phi, state = rule.init_params(jax.random.key(1)), _lived_state(rule, jax.random.key(2))
    sequence, step_inputs = jax.jit(rule.loss_inputs)(state, out, rollout, state.history)
    np.testing.assert_allclose(jax.jit(rule.network.apply)(phi, sequence, step_inputs),
                               _reference_losses(rule, phi, sequence, step_inputs), rtol=1e-4, atol=1e-5)


def test_inputs_layout_and_padding():
    """e = [norm s, norm r | onehot a, term, trunc], p = π's probabilities, v, v·mem; padding is 0."""
    state = RULE.init_state(jax.random.key(0), None)
    rollout, out = _rollout(jax.random.key(1)), _agent_out(jax.random.key(2))
    sequence, step_inputs = jax.jit(RULE.loss_inputs)(state, out, rollout, state.history)
    n = RULE.buffer_length
    assert sequence.shape == (n - 1 + T, B, RULE.record_size + RULE.memory_size)
    assert step_inputs.shape == (T, B, RULE.record_size - 1 + RULE.memory_size)
    np.testing.assert_array_equal(sequence[:n - 1], 0.0)  # before the lifetime: nothing, v = 0
    current = sequence[n - 1:]
    np.testing.assert_allclose(current[..., :OBS], rollout.observations[:-1], rtol=1e-5)  # no stats yet
    np.testing.assert_allclose(current[..., OBS], rollout.rewards, rtol=1e-5)
    np.testing.assert_array_equal(current[..., OBS + 1:OBS + 1 + A], jax.nn.one_hot(rollout.actions, A))
    np.testing.assert_array_equal(current[..., OBS + 1 + A], rollout.terminated)
    np.testing.assert_array_equal(current[..., OBS + 2 + A], rollout.truncated)
    np.testing.assert_allclose(current[..., OBS + 3 + A:OBS + 3 + 2 * A], jax.nn.softmax(out.logits[:-1]),
                               rtol=1e-6)
    np.testing.assert_array_equal(current[..., RULE.record_size - 1], 1.0)
    np.testing.assert_allclose(current[..., RULE.record_size:],
                               jnp.broadcast_to(epg.memory_output(state.memory_params), (T, B, 4)))


# ---------------------------------------------------------------------------------- causality


@pytest.mark.parametrize("field", ["observations", "actions", "rewards", "terminated", "truncated", "logits"])
def test_later_steps_cannot_change_earlier_losses(small, field):
    phi, state, rollout, out, losses = small
    base = losses(phi, state, out, rollout, state.history)
    t = 4

    def perturbed(step):
        """Per-step losses with `field` of step `step` changed."""
        k = jax.random.fold_in(jax.random.key(7), step)
        new_rollout, new_out = rollout, out
        if field == "logits":
            new_out = out.replace(logits=out.logits.at[step].add(3.0 * jax.random.normal(k, (B, A))))
        else:
            x = getattr(rollout, field)
            if field == "actions":
                x = x.at[step].set((x[step] + 1) % A)
            elif x.dtype == bool:
                x = x.at[step].set(~x[step])
            else:
                x = x.at[step].add(3.0 + jax.random.normal(k, x[step].shape))
            new_rollout = rollout.replace(**{field: x})
        return losses(phi, state, new_out, new_rollout, state.history)

    later = perturbed(t + 1)
    np.testing.assert_array_equal(later[:t + 1], base[:t + 1])  # bit for bit
    assert np.all(later[t + 1] != base[t + 1])  # the perturbation is seen at all
    # A step inside the window of t, at t and 3 steps before it, does change L_t.
    for step in (t, t - 3):
        earlier = perturbed(step)
        assert np.all(earlier[t] != base[t]), (field, step)


def test_buffer_crosses_the_rollout_boundary(small):
    """The N−1 buffered steps reach steps t < N−1 of the rollout, and no later one."""
    phi, state, rollout, out, losses = small
    n = RULE.buffer_length
    base = losses(phi, state, out, rollout, state.history)
    history = state.history.at[-1, :, :OBS].add(2.0)  # the step just before the rollout
    changed = losses(phi, state, out, rollout, history)
    assert np.all(changed[:n - 1] != base[:n - 1])
    np.testing.assert_array_equal(changed[n - 1:], base[n - 1:])


def test_update_state_advances_the_buffer_and_statistics(small):
    phi, state, rollout, out, _ = small
    _, new = _advance(phi, state, rollout, out, _hyper())
    n = RULE.buffer_length
    # T = 10 ≥ N − 1 = 6: the buffer is the rollout's last 6 steps, p as of this θ.
    np.testing.assert_allclose(new.history, RULE.records(rollout, out)[T - (n - 1):])
    samples = RULE.records(rollout, out)[..., :RULE.num_normalised].reshape(-1, RULE.num_normalised)
    assert float(new.input_stats.count) == 50 + T * B
    np.testing.assert_allclose(new.input_stats.mean,
                               (50 * state.input_stats.mean + samples.sum(0)) / (50 + T * B), rtol=1e-5)
    # A rollout shorter than the buffer shifts it: old steps first, then the new ones.
    short = jax.tree.map(lambda x: x[:3], rollout.replace(action_mask=None)).replace(
        action_mask=rollout.action_mask, observations=rollout.observations[:4])
    short_out = jax.tree.map(lambda x: x[:4], out)
    _, new = _advance(phi, state, short, short_out, _hyper())
    np.testing.assert_allclose(new.history[:3], state.history[3:])
    np.testing.assert_allclose(new.history[3:], RULE.records(short, short_out))


def test_running_statistics_are_exact():
    x = np.random.default_rng(0).normal(3.0, 2.0, (70, 2)).astype(np.float32)
    stats = epg.init_running_stats(2)
    for chunk in (x[:10], x[10:45], x[45:]):
        stats = epg.update_running_stats(stats, jnp.asarray(chunk))
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, x.var(0), rtol=1e-4)
    np.testing.assert_allclose(epg.normalise(epg.init_running_stats(2), x), np.clip(x, -10, 10), rtol=1e-5)


# ------------------------------------------------------------------------------------- reward


@pytest.mark.parametrize("use_reward", [False, True])
def test_reward_free_loss_never_reads_rewards(use_reward):
    rule = dataclasses.replace(RULE, use_reward=use_reward)
    phi = rule.init_params(jax.random.key(0))
    state = _lived_state(rule, jax.random.key(1))
    rollout, out = _rollout(jax.random.key(2), rule), _agent_out(jax.random.key(3))
    grad = jax.jit(jax.grad(lambda r: jnp.sum(rule.per_step_losses(
        phi, state, out, rollout.replace(rewards=r), state.history))))(rollout.rewards)
    assert np.any(grad != 0) == use_reward
    if not use_reward:
        np.testing.assert_array_equal(grad, 0.0)

    # Everything an update at α = 0 (meta-test) produces: the gradient on the agent's outputs
    # (hence θ'), the memory, the buffer and the statistics.
    targets_of = lambda r: rule.targets(phi, state, r, out, jax.tree.map(lambda x: x[1:], out), _hyper())

    @jax.jit
    def update(r):
        grad = jax.grad(lambda o: rule.agent_loss(phi, state, o, r, targets_of(r), _hyper())[0])(out)
        return grad, rule.update_state(phi, state, r, out, targets_of(r), _hyper())

    a = update(rollout)
    b = update(rollout.replace(rewards=rollout.rewards + 5.0 * jnp.arange(T)[:, None]))
    same = [bool(np.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    assert all(same) == (not use_reward)


# ------------------------------------------------------------------------------------- memory


def test_memory_follows_the_gradient_of_the_learned_loss(small):
    phi, state, rollout, out, losses = small
    _, new = _advance(phi, state, rollout, out, _hyper(lr=1e-3))
    learned_loss = jax.jit(RULE.learned_loss)
    before = learned_loss(phi, state, out, rollout, state.history)
    after = learned_loss(phi, state.replace(memory_params=new.memory_params), out, rollout, state.history)
    assert float(after) < float(before)
    # Adam's first step moves every coordinate by ≈ α_lr.
    step = jax.flatten_util.ravel_pytree(
        jax.tree.map(jnp.subtract, new.memory_params, state.memory_params))[0]
    np.testing.assert_allclose(np.abs(step), 1e-3, rtol=1e-2)
    # L_PPO does not read the memory: at α = 1 it stays put.
    _, guided = _advance(phi, state, rollout, out, _hyper(alpha=1.0))
    jax.tree.map(np.testing.assert_array_equal, guided.memory_params, state.memory_params)


def _continuous_task(name):
    """A registered Box task with a tanh-Gaussian policy."""
    task = envs.make(name)
    return dataclasses.replace(task, agent=dataclasses.replace(task.agent, continuous_policy="tanh_gaussian"))


def _train_fn(task, rule, agent, phi, hyper, unroll_length):
    """`training.continue_training` for one update of per-lifetime-keyed lifetimes, jitted (each
    call continues where the last left off; `training.train_agents` builds its agent inside the
    trace, which Box action spaces do not allow, so the agent comes from outside here)."""
    train = jax.jit(lambda states, keys, first_update: training.continue_training(
        task, rule, agent, phi, hyper, states, keys=keys, first_update=first_update, num_updates=1,
        unroll_length=unroll_length))
    # first_update traced, not a Python int: one compilation for every call.
    return lambda states, keys, first_update: train(states, keys, jnp.int32(first_update))


def _init_fn(task, agent, rule, num_envs):
    """Jitted `training.init_lifetimes_from_keys`: keys [L] → fresh lifetimes."""
    init = jax.jit(lambda keys: training.init_lifetimes_from_keys(task, agent, keys, num_envs, rule=rule))
    # Strong types (gymnax's Pendulum starts with a weakly typed state), or the first update's
    # output would not match its input and `_train_fn` would compile twice.
    return lambda keys: jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype), init(keys))


@pytest.fixture(scope="module")
def cartpole():
    """(task, agent, init: keys [L] → fresh lifetimes) of CartPole for RULE."""
    task = envs.make("gymnax/CartPole-v1")
    assert epg.EPG.for_task(task, num_envs=B, **SMALL) == RULE
    agent = training.build_agent(task, RULE.output_spec, grad_clip=RULE.agent_grad_clip)
    return task, agent, _init_fn(task, agent, RULE, B)


def test_memory_carries_across_updates_and_restarts_with_a_lifetime(cartpole):
    """CartPole lifetimes (discrete actions) with PPO's multi-step inner loop (2 epochs × 2
    minibatches) and a random φ: learner steps thread the memory through a lifetime."""
    task, agent, init = cartpole
    rule = dataclasses.replace(RULE, epochs=2, minibatches=2)  # same state as RULE's
    phi = rule.init_params(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), 2)
    lifetimes = init(keys)
    unroll_length = 4  # < N − 1 = 6: the buffer fills over two updates
    train = _train_fn(task, rule, agent, phi, _hyper(alpha=0.5, lr=1e-2), unroll_length)
    after1, stats1 = train(lifetimes, keys, 0)
    after2, stats2 = train(after1, keys, 1)
    for stats in (stats1, stats2):
        assert all(np.all(np.isfinite(v)) for v in stats.values())
        assert np.all(stats["epg_loss"] != 0) and np.all(stats["ppo_loss"] != 0)
    memory = lambda lt: jax.vmap(epg.memory_output)(lt.agent.rule_state.memory_params)  # [L, M]
    assert np.all(np.abs(memory(after1) - memory(lifetimes)).max(-1) > 1e-3)
    assert np.all(np.abs(memory(after2) - memory(after1)).max(-1) > 1e-3)
    # The second update reads the memory the first one left: with the initial memory put back,
    # θ'' and the memory's own next step differ.
    initial = lifetimes.agent.rule_state
    rs1 = after1.agent.rule_state
    reset, _ = train(after1.replace(agent=after1.agent.replace(
        rule_state=rs1.replace(memory_params=initial.memory_params))), keys, 1)
    params = lambda lt: jax.flatten_util.ravel_pytree(lt.agent.params)[0]
    assert np.abs(params(after2) - params(reset)).max() > 1e-6
    assert np.abs(memory(after2) - memory(reset)).max() > 1e-3
    # The buffer holds the valid steps of both rollouts, at most N − 1 (before: padding).
    np.testing.assert_array_equal(rs1.history[..., -1].sum(1), unroll_length)
    np.testing.assert_array_equal(after2.agent.rule_state.history[..., -1].sum(1), RULE.buffer_length - 1)
    np.testing.assert_array_equal(after2.agent.rule_state.input_stats.count, 2 * unroll_length * B)

    # A new lifetime (as ES starts one per candidate) starts from a fresh memory, buffer, statistics.
    fresh = init(keys).agent.rule_state
    jax.tree.map(np.testing.assert_array_equal, fresh, initial)
    np.testing.assert_array_equal(fresh.history, 0.0)
    np.testing.assert_array_equal(fresh.input_stats.count, 0.0)
    np.testing.assert_allclose(memory(lifetimes), np.tanh(initial.memory_params["kernel"][:, 0]), rtol=1e-6)
    assert np.abs(memory(lifetimes)).max() < 0.05  # starts near 0


# ---------------------------------------------------------------------- guidance, meta-gradients


def test_guidance_weight_interpolates_exactly_between_the_two_losses(small):
    phi, state, rollout, out, _ = small
    next_out = jax.tree.map(lambda x: x[1:], out)
    targets, _ = _advance(phi, state, rollout, out, _hyper())
    ppo_rule = RULE.ppo
    ppo_targets = ppo_rule.targets({}, None, rollout, out, next_out, _hyper())
    value_and_grad = lambda f: jax.jit(jax.value_and_grad(f))
    learned = value_and_grad(lambda o: RULE.learned_loss(phi, state, o, rollout, state.history))
    guided = value_and_grad(
        lambda o, alpha: RULE.agent_loss(phi, state, o, rollout, targets, _hyper(alpha))[0])
    pure_ppo = value_and_grad(lambda o: ppo_rule.agent_loss({}, None, o, rollout, ppo_targets, _hyper())[0])
    for alpha, expected in ((1.0, pure_ppo), (0.0, learned)):
        (loss, grad), (expected_loss, expected_grad) = guided(out, alpha), expected(out)
        assert float(loss) == float(expected_loss)
        # Equal up to the order XLA sums the fused terms in (0·∇ of the other loss is exactly 0).
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), grad, expected_grad)
    np.testing.assert_allclose(guided(out, 0.25)[0], 0.75 * learned(out)[0] + 0.25 * pure_ppo(out)[0],
                               rtol=1e-6)


def test_meta_gradient_through_two_updates(cartpole):
    """∂θ''/∂φ after two agent updates (the second one reads the memory the first one trained) of
    a CartPole agent on two fixed rollouts: finite, non-zero on every φ leaf (smooth activation),
    and equal to finite differences."""
    _, agent, init = cartpole
    rule = dataclasses.replace(RULE, activation="silu")
    lifetime = jax.tree.map(lambda x: x[0], init(jax.random.split(jax.random.key(0), 2)))
    rollouts = [_rollout(jax.random.key(k)) for k in (1, 2)]
    flat, _ = jax.flatten_util.ravel_pytree(lifetime.agent.params)
    weights = jax.random.normal(jax.random.key(3), flat.shape)
    hyper = _hyper(alpha=0.0, lr=1e-2)

    def outcome(phi):
        state = lifetime.agent
        for rollout in rollouts:
            state = agent_lib.agent_update(rule, agent, phi, state, rollout, hyper)[0]
        return jnp.dot(jax.flatten_util.ravel_pytree(state.params)[0], weights)

    phi = rule.init_params(jax.random.key(4))
    value_and_grad = jax.jit(jax.value_and_grad(outcome))  # one compilation for the differences too
    _, grads = value_and_grad(phi)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
        assert np.any(g != 0), f"zero meta-gradient on {jax.tree_util.keystr(path)}"
    flat_grads, unravel = jax.flatten_util.ravel_pytree(grads)
    direction = unravel(flat_grads / jnp.linalg.norm(flat_grads))
    eps = 1e-3  # Adam's normalised steps curve θ''(φ) enough that 1e-2 is off by ~1%
    plus, _ = value_and_grad(jax.tree.map(lambda p, d: p + eps * d, phi, direction))
    minus, _ = value_and_grad(jax.tree.map(lambda p, d: p - eps * d, phi, direction))
    np.testing.assert_allclose((plus - minus) / (2 * eps), jnp.linalg.norm(flat_grads), rtol=0.05)


@pytest.mark.parametrize("activation", ["leaky_relu", "silu"])
def test_which_leaves_get_a_backpropagated_meta_gradient(small, activation):
    """φ → ∂L_φ/∂(policy outputs): with leaky ReLU, L_φ is piecewise linear, so its gradient does
    not depend on the biases (exactly 0) and does on every kernel; with silu on every leaf."""
    _, state, rollout, out, _ = small
    rule = dataclasses.replace(RULE, activation=activation)
    phi = rule.init_params(jax.random.key(5))
    direction = jax.random.normal(jax.random.key(6), out.logits.shape)

    def projected_agent_gradient(phi):
        g = jax.grad(lambda o: rule.learned_loss(phi, state, o, rollout, state.history))(out)
        return jnp.vdot(g.logits, direction)

    grads = jax.jit(jax.grad(projected_agent_gradient))(phi)["params"]
    for layer, leaves in grads.items():
        for name, g in leaves.items():
            assert np.all(np.isfinite(g))
            if name == "bias" and activation == "leaky_relu":
                np.testing.assert_array_equal(g, 0.0)
            else:
                assert np.any(g != 0), (layer, name)
    assert "bias" not in grads["loss"]  # a constant offset of L_φ: no output bias at all


# ------------------------------------------------------------------------------------- tasks


def test_continuous_lifetimes_with_random_phi_are_finite():
    """Pendulum with a tanh-Gaussian policy and the reward-free loss (discrete actions: the
    CartPole lifetimes of the memory test)."""
    task = _continuous_task("gymnax/Pendulum-v1")
    num_envs, num_lifetimes, unroll_length = 4, 2, 8
    rule = epg.EPG.for_task(task, num_envs=num_envs, use_reward=False, **SMALL)
    assert not rule.discrete and rule.action_size == 1
    agent = training.build_agent(task, rule.output_spec, grad_clip=rule.agent_grad_clip)
    assert agent.policy_spec.kind == "tanh_gaussian"
    keys = jax.random.split(jax.random.key(1), num_lifetimes)
    states = _init_fn(task, agent, rule, num_envs)(keys)
    phi = rule.init_params(jax.random.key(0))
    train = _train_fn(task, rule, agent, phi, _hyper(alpha=0.5), unroll_length)
    for update in range(3):
        states, stats = train(states, keys, update)
        for stat_name, value in stats.items():
            assert np.all(np.isfinite(value)), stat_name
        assert np.all(stats["epg_loss"] != 0) and np.all(stats["ppo_loss"] != 0)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(states.agent))
    rule_state = states.agent.rule_state
    np.testing.assert_array_equal(rule_state.history[..., -1], 1.0)  # 24 steps ≥ N − 1
    np.testing.assert_array_equal(rule_state.input_stats.count, 3 * unroll_length * num_envs)


# ----------------------------------------------------------------------------- configuration


def test_config_round_trip_and_registration():
    assert rules.RULES["epg"] is epg.EPG
    rule = dataclasses.replace(RULE, use_reward=False, epochs=2)
    config = json.loads(json.dumps(rule.config()))
    assert rules.make_rule("epg", config) == rule
    assert rule.output_spec == types.OutputSpec(value=True)
    assert rule.hyper_grid == {"pg_guidance": (0.0,)}
    assert (rule.num_epochs, rule.num_minibatches, rule.agent_grad_clip) == (2, 1, 0.5)
    assert isinstance(rule.ppo, ppo.PPO)
    # The paper's shapes are the defaults: 128 → 18 → 8 positions, 8 channels, context 32.
    paper = epg.EPG(obs_size=OBS, action_size=A, discrete=True, num_envs=1)
    conv = jax.eval_shape(paper.init_params, jax.random.key(0))["params"]
    assert conv["conv1"]["kernel"].shape == (8, paper.record_size + 32, 8)
    assert conv["context"]["kernel"].shape == (8 * 8, 32)
    assert conv["hidden"]["kernel"].shape == (32 + paper.record_size - 1 + 32, 16)


@pytest.mark.parametrize("name, expected", [
    ("gymnax/CartPole-v1", (4, 2, True)), ("gymnax/Pendulum-v1", (3, 1, False)),
    ("chain/short", (1, 2, True)),
])
def test_for_task_reads_the_spaces(name, expected):
    rule = epg.EPG.for_task(envs.make(name), num_envs=3)
    assert (rule.obs_size, rule.action_size, rule.discrete, rule.num_envs) == (*expected, 3)


def test_bad_configurations_are_refused(small):
    base = dict(obs_size=OBS, action_size=A, discrete=True, num_envs=B)
    with pytest.raises(ValueError, match="shorter than conv1_kernel"):
        epg.EPG(**base, buffer_length=4)
    with pytest.raises(ValueError, match="fewer than conv2_kernel"):
        epg.EPG(**base, buffer_length=20)  # (20 − 8) // 7 + 1 = 2 positions < 4
    with pytest.raises(ValueError, match="must divide num_envs"):
        epg.EPG(**base, minibatches=3)
    with pytest.raises(ValueError, match="must be an int >= 1"):
        epg.EPG(**{**base, "obs_size": 0})
    with pytest.raises(ValueError, match="clip_epsilon"):
        epg.EPG(**base, clip_epsilon=0.0)
    phi, state, rollout, out, _ = small
    wrong = dataclasses.replace(RULE, num_envs=B + 1)
    with pytest.raises(ValueError, match="built for num_envs=3"):
        wrong.targets(phi, wrong.init_state(jax.random.key(0), None), rollout, out,
                      jax.tree.map(lambda x: x[1:], out), _hyper())
