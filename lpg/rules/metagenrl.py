"""MetaGenRL's learned objective L_α (Kirsch et al. 2020, arXiv:1910.04098; SPEC §3).

What is learned: α, the parameters of an objective function that a TD3-style agent's
deterministic policy π_φ *minimises* (φ ← φ − λ ∇_φ L_α, paper Eq. 6). L_α reads a batch of
truncated episodes τ of length T = 20 sampled from the agent's replay buffer (`lpg.replay`) and,
per step t (oldest first, t = 0..T−1; Appendix B.1, Fig. 2):

    e_t   = mean_d f_α([a_t,d, π_φ(s_t)_d])   kernel-1 convolutions over the D action dims  (Eq. 7)
            f_α: `action_layers` × (Dense(`action_filters`), ReLU on half the units and x² on the
            other half), applied to each action dimension alone, then averaged over d, so e_t
            does not depend on D and one α serves environments with different action sizes.
    x_t   = [r_t, V_t, V_{t+1}, t / T, e_t]
    V_t   = Q_θ1(s_t, π_φ(s_t)),  V_{t+1} = (1 − term_t) Q_θ1(s_{t+1}, π_φ(s_{t+1}))   (no ∇_φ)
    h_t   = LSTM(x_t, h_{t+1})              run BACKWARD in time: h_t summarises steps t..T−1,
            with h_{t+1} replaced by zeros when the episode ended at t (term_t or trunc_t), so
            nothing of the next episode in the window reaches step t.
    l_t   = η · tanh((w·h_t + b) / η)       bounded in (−η, η) (η = `output_bound`, paper 1000)
    L_α   = mean over the N episodes of Σ_t l_t   (reduction "sum", the paper's), or of mean_t l_t.

Gradients reach φ only through π_φ(s_t) in e_t (B.1: "We only allow gradients to flow backwards
through π_φ(s_t) to φ"): ∇_φ L_α treats V as a constant. The meta-gradient, however, is the
exact ∇_α of the meta-loss: V inside the k-th inner step is computed with φ_{k−1}, which depends
on α, and that dependence is differentiated (`Objective.loss`'s value_actor_params). The critic Q_θ1 is the agent's
first TD3 critic, trained by TD error (`lpg.td3.critic_step`), never by L_α.

The meta-gradient (Eq. 6, and Eq. 8 for K > 1 inner steps): with K minibatches τ_1..τ_K,

    φ_0 = φ,  φ_k = φ_{k−1} − λ3 ∇_φ L_α(τ_k, φ_{k−1})      (plain gradient steps, λ3 = inner_lr)
    meta-loss(α) = − mean_{s ∈ τ_1..τ_K} Q_θ1(s, π_{φ_K}(s))
    ∇_α meta-loss: second order (∇_α ∇_φ), by differentiating through the K inner steps.

`meta_loss` is that function of α for one agent; `lpg.meta.metagenrl` averages its gradient over
a population and applies it.

Departures from the paper, and choices where it is silent:
  * The time input is the step's position in the window, t / T, not its time step in the
    episode: the buffer does not store episode time steps (`lpg.td3.Transition`).
  * "scaled tanh" is read as η·tanh(x/η): identity near 0 (a freshly initialised L_α gives
    ordinary-sized gradients) and bounded by η.
  * The K minibatches are independent uniform draws (with replacement), so not strictly disjoint.
  * The ReLU/square split is applied after every action layer (the paper: "ReLU activations
    for half of the units and square activations for the other half").

Why not an `UpdateRule` (lpg/rules/base.py): an UpdateRule turns a fresh on-policy rollout of a
stochastic policy into targets for `lpg.agent.learner_step`. MetaGenRL's agents are off-policy
TD3 agents (`lpg.td3`: replay buffer, deterministic policy, separate critics with target
networks, two optimisers), and L_α reads replayed truncated episodes plus the agent's own critic.
Forcing that through `targets`/`agent_loss` would leave both meaningless (as `lpg.td3` explains
for TD3 itself), so L_α is a static object with `init_params` and pure functions over explicit
arrays, and the TD3 pieces (`critic_step`, `update_targets`, `env_step`, `warmup`) do the rest.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from lpg import td3

REDUCTIONS = ("sum", "mean")
NUM_SCALAR_INPUTS = 4  # r_t, V_t, V_{t+1}, t / T


# ---------------------------------------------------------------------------------- network


def _half_relu_half_square(x: jax.Array) -> jax.Array:
    """ReLU on the first half of the last axis, x² on the rest (Appendix B.1)."""
    half = x.shape[-1] // 2
    return jnp.concatenate([nn.relu(x[..., :half]), jnp.square(x[..., half:])], axis=-1)


class ActionEmbedding(nn.Module):
    """e_t = mean_d f([a_t,d, π(s_t)_d]) (Eq. 7 and beyond): actions [T, D, 2] → [T, filters].

    A Dense over the last axis of size 2 *is* a kernel-1, stride-1 convolution over the D action
    dimensions (the same weights at every d).
    """

    layers: int
    filters: int

    @nn.compact
    def __call__(self, actions: jax.Array) -> jax.Array:
        x = actions
        for _ in range(self.layers):
            x = _half_relu_half_square(nn.Dense(self.filters)(x))  # [T, D, filters]
        return jnp.mean(x, axis=-2)


class _ResettingLSTM(nn.Module):
    """An LSTM over [T, F] run from t = T−1 down to 0, whose carry is zeroed before step t when
    `reset[t]` (the episode ended at t, so step t+1 belongs to another episode). Returns the
    hidden states [T, H] in the inputs' (forward) order."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array) -> jax.Array:
        def body(cell, carry, inputs):
            x_t, reset_t = inputs
            carry = jax.tree.map(lambda c: jnp.where(reset_t, jnp.zeros_like(c), c), carry)
            return cell(carry, x_t)

        scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=0, out_axes=0, reverse=True)
        zeros = jnp.zeros((self.features,), x.dtype)
        # lax.scan(reverse=True) keeps outputs aligned with inputs: h[t] is the state after step t.
        _, hidden = scan(nn.OptimizedLSTMCell(self.features), (zeros, zeros), (x, reset))
        return hidden


class ObjectiveNetwork(nn.Module):
    """Per-step objective values of one truncated episode (module docstring).

    Args (of __call__):
      scalars: [T, 4] (r_t, V_t, V_{t+1}, t / T).
      actions: [T, D, 2] (a_t, π_φ(s_t)) per action dimension.
      episode_end: bool [T], the episode ended at t (terminated or truncated).
    Returns:
      l: [T], each in (−η, η).
    """

    lstm_size: int
    action_layers: int
    action_filters: int
    output_bound: float

    @nn.compact
    def __call__(self, scalars: jax.Array, actions: jax.Array, episode_end: jax.Array) -> jax.Array:
        chex.assert_rank([scalars, actions, episode_end], [2, 3, 1])
        chex.assert_axis_dimension(scalars, 1, NUM_SCALAR_INPUTS)
        chex.assert_axis_dimension(actions, 2, 2)
        embedding = ActionEmbedding(self.action_layers, self.action_filters)(actions)  # [T, F]
        x = jnp.concatenate([scalars, embedding], axis=-1)
        hidden = _ResettingLSTM(self.lstm_size)(x, episode_end)  # [T, H]
        raw = nn.Dense(1)(hidden)[:, 0]
        return self.output_bound * jnp.tanh(raw / self.output_bound)


# ---------------------------------------------------------------------------- the objective


@dataclasses.dataclass(frozen=True)
class Objective:
    """Static configuration of L_α (paper Table 3 defaults); holds no arrays.

    lstm_size: LSTM units (32). action_layers / action_filters: kernel-1 convolutions over action
    dims (3 / 32). output_bound: η (1000). reduction: "sum" (paper) or "mean" over the T steps.
    """

    KIND = "metagenrl"  # the saved rule's kind (launch/checkpoints.py save_rule)

    lstm_size: int = 32
    action_layers: int = 3
    action_filters: int = 32
    output_bound: float = 1000.0
    reduction: str = "sum"

    def __post_init__(self):
        for name in ("lstm_size", "action_layers", "action_filters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MetaGenRL Objective.{name} must be an int >= 1, got {value!r}")
        if self.action_filters < 2:
            raise ValueError(f"MetaGenRL Objective.action_filters must be >= 2 (half ReLU, half "
                             f"square units), got {self.action_filters!r}")
        if not (isinstance(self.output_bound, (int, float)) and math.isfinite(self.output_bound)
                and self.output_bound > 0):
            raise ValueError(f"MetaGenRL Objective.output_bound must be a finite number > 0, got "
                             f"{self.output_bound!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"MetaGenRL Objective.reduction must be one of {REDUCTIONS}, got "
                             f"{self.reduction!r}")

    @property
    def network(self) -> ObjectiveNetwork:
        return ObjectiveNetwork(self.lstm_size, self.action_layers, self.action_filters,
                                float(self.output_bound))

    def init_params(self, key: jax.Array) -> Any:
        """α. The shapes do not depend on the environment (D is averaged out), so one α serves
        every population group."""
        length, action_dim = 2, 1
        return self.network.init(key, jnp.zeros((length, NUM_SCALAR_INPUTS)),
                                 jnp.zeros((length, action_dim, 2)), jnp.zeros((length,), bool))

    def config(self) -> dict:
        return dataclasses.asdict(self)

    def per_step(self, meta_params: Any, reward: jax.Array, value: jax.Array,
                 next_value: jax.Array, action: jax.Array, policy_action: jax.Array,
                 episode_end: jax.Array) -> jax.Array:
        """l_t of one truncated episode.

        Args:
          reward, value, next_value: [T] r_t, V_t, V_{t+1}.
          action, policy_action: [T, D] a_t (stored) and π_φ(s_t), normalised units.
          episode_end: bool [T].
        Returns:
          [T].
        """
        chex.assert_rank([reward, value, next_value, action, policy_action, episode_end],
                         [1, 1, 1, 2, 2, 1])
        length = reward.shape[0]
        time = jnp.arange(length, dtype=value.dtype) / length
        scalars = jnp.stack([reward.astype(value.dtype), value, next_value, time], axis=-1)
        actions = jnp.stack([action.astype(policy_action.dtype), policy_action], axis=-1)
        return self.network.apply(meta_params, scalars, actions, episode_end)

    def loss(self, meta_params: Any, nets: td3.Networks, actor_params: Any, critic_params: Any,
             episodes: td3.Transition, value_actor_params: Any = None) -> jax.Array:
        """L_α(τ, π_φ, V): scalar, the mean over N episodes of the reduced l_t.

        Args:
          meta_params: α.
          nets: the agent's networks (actor and critic modules).
          actor_params: φ (the only argument L_α is differentiated by in the inner loop).
          critic_params: θ1, one critic's parameters (no gradient flows into them).
          episodes: `td3.Transition` leaves [N, T, ...], oldest step first (`replay.sample_sequences`).
          value_actor_params: the φ inside V = Q_θ1(s, π_φ(s)); default: `actor_params` with its
            gradient stopped. `inner_updates` passes φ_k here as a separate argument, so that
            ∇_φ L_α still flows only through π_φ(s_t) while the meta-gradient sees how V moves
            with φ_k (and so with α): ∇_α is then the exact derivative of the meta-loss.
        """
        chex.assert_rank(episodes.reward, 2)
        critic_params = jax.lax.stop_gradient(critic_params)
        policy_action = nets.actor.apply(actor_params, episodes.obs)  # [N, T, D]
        if value_actor_params is None:
            value_actor_params = jax.lax.stop_gradient(actor_params)
        value = nets.critic.apply(critic_params, episodes.obs,
                                  nets.actor.apply(value_actor_params, episodes.obs))
        next_q = nets.critic.apply(critic_params, episodes.next_obs,
                                   nets.actor.apply(value_actor_params, episodes.next_obs))  # [N, T]
        # A terminal next state has value 0; a time-limit cut keeps the true s_{t+1}'s value.
        next_value = (1.0 - episodes.terminated.astype(next_q.dtype)) * next_q
        episode_end = episodes.terminated | episodes.truncated
        per_step = jax.vmap(self.per_step, in_axes=(None, 0, 0, 0, 0, 0, 0))(
            meta_params, episodes.reward, value, next_value, episodes.action, policy_action,
            episode_end)  # [N, T]
        reduce = jnp.sum if self.reduction == "sum" else jnp.mean
        return jnp.mean(reduce(per_step, axis=1))


def inner_updates(objective: Objective, meta_params: Any, nets: td3.Networks, actor_params: Any,
                  critic_params: Any, minibatches: td3.Transition, inner_lr: float | jax.Array) -> Any:
    """φ_K after K plain gradient steps φ_k = φ_{k−1} − λ3 ∇_φ L_α(τ_k, φ_{k−1}) (Eq. 6, 8).

    minibatches: leaves [K, N, T, ...]. Differentiable w.r.t. `meta_params` (second order).
    """
    grad_fn = jax.grad(objective.loss, argnums=2)

    def step(phi, batch):
        # φ twice: differentiated through π_φ(s_t) only (argnums=2), but V also moves with φ_k.
        grads = grad_fn(meta_params, nets, phi, critic_params, batch, phi)
        return jax.tree.map(lambda p, g: p - inner_lr * g, phi, grads), None

    phi, _ = jax.lax.scan(step, actor_params, minibatches)
    return phi


def meta_loss(objective: Objective, meta_params: Any, nets: td3.Networks, actor_params: Any,
              critic_params: Any, minibatches: td3.Transition, inner_lr: float | jax.Array
              ) -> jax.Array:
    """−mean_s Q_θ1(s, π_{φ_K}(s)) over the states of all K minibatches (Eq. 6/8, negated so that
    the meta-optimiser minimises it). Its gradient w.r.t. `meta_params` is the meta-gradient.

    minibatches: `td3.Transition` leaves [K, N, T, ...]; critic_params: θ1 of one critic.
    """
    phi = inner_updates(objective, meta_params, nets, actor_params, critic_params, minibatches,
                        inner_lr)
    obs = minibatches.obs.reshape((-1, minibatches.obs.shape[-1]))  # [K·N·T, O]
    critic_params = jax.lax.stop_gradient(critic_params)
    return -jnp.mean(nets.critic.apply(critic_params, obs, nets.actor.apply(phi, obs)))
