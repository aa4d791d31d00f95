"""Learned Policy Gradient: the meta-learned update rule of Oh et al. 2020 (SPEC §1).

The rule never sees observations or the action space. Per step t it reads (appendix B.1)

    x_t = [r_t, d_t, γ, π(a_t|s_t), φ(y(s_t)), φ(y(s_{t+1}))],

with φ one shared Dense(16)-ReLU-Dense(1) embedding of the agent's prediction vectors. An LSTM
runs *backward* in time over the T steps; its carry is reset at episode boundaries so nothing
flows across episodes. Heads on the LSTM output give π̂_t ∈ R and ŷ_t = softmax(Dense(m)) ∈ Δ^m.

The agent update is Eq. 2 (π̂, ŷ constant w.r.t. θ, functions of η):

    L(θ) = E_t[ −log π_θ(a_t|s_t) π̂_t + α_y KL(y_θ(s_t) ‖ ŷ_t) ]

or, with the meta-test baseline of Eq. 7 (`use_baseline=True`, f_θ = the agent's value head):

    L(θ) = E_t[ −log π_θ(a_t|s_t) (π̂_t − f_θ(s_t)) + α_y KL(y_θ(s_t) ‖ ŷ_t) + ½ (f_θ(s_t) − π̂_t)² ].

Episode boundaries. d_t is the termination flag of transition t (a true terminal state); a
time-limit truncation is not a termination. The backward carry from t+1 is zeroed when transition
t ends the episode either way (after the auto-reset, t+1 belongs to the next episode). The
successor embedding uses the true s_{t+1} (`Rollout.next_observations`): φ(y(s_{t+1})) is 0 after
a termination (nothing follows a terminal state) and φ of y of the cut episode's last observation
after a truncation. So nothing of the next episode reaches steps at or before the boundary.

Ablations of Fig. 7: `y_softmax=False` makes y ∈ R^m with ‖y − ŷ‖² instead of KL (the agent's
y head is used raw, ŷ = Dense(m) without softmax, and H(y) drops out of the meta-objective); the
regulariser switches live in the meta-objective (lpg/meta/objective.py).

Shared with LPG-V (lpg/rules/lpg_v.py, the same network with V(s) in place of φ(y(s)) and no ŷ
head): `step_inputs`, `trajectory_inputs` and `BackwardLSTM`.
"""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lpg import types
from lpg.rules import base

NUM_INPUTS = 6  # [r, d, γ, π(a|s), φ(y_t), φ(y_{t+1})]
MATMUL_DTYPES = ("float32", "bfloat16")


def step_inputs(rewards, terminated, discount, pi_a, feature_t, feature_tp1) -> jax.Array:
    """The per-step input vector of a backward rule network (appendix B.1), [T, B, NUM_INPUTS]:

        x_t = [r_t, d_t, γ, π(a_t|s_t), f(s_t), (1 − d_t) f(s_{t+1})],

    f being LPG's embedding φ(y(·)) or LPG-V's value V(·) (lpg/rules/lpg_v.py). The successor
    feature is zeroed after a termination: nothing follows a terminal state.

    Args:
      rewards, pi_a, feature_t, feature_tp1: [T, B]; feature_tp1 on the true s_{t+1}.
      terminated: [T, B] in {0, 1}, d_t. discount: scalar or [T, B] γ.
    """
    chex.assert_equal_shape([rewards, terminated, pi_a, feature_t, feature_tp1])
    discount = jnp.broadcast_to(discount, rewards.shape)
    feature_tp1 = feature_tp1 * (1.0 - terminated)
    return jnp.stack([rewards, terminated, discount, pi_a, feature_t, feature_tp1], axis=-1)


def trajectory_inputs(
    rollout: types.Rollout, agent_out: types.AgentOutput,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(π(a_t|s_t), d_t, episode_end_t), each [T, B] float32, of a rollout and the agent's outputs
    on it ([T+1, B]): what LPG and LPG-V read besides their per-state features. episode_end is
    terminated or truncated (it resets the backward carry, module docstring)."""
    chex.assert_rank(rollout.rewards, 2)
    chex.assert_axis_dimension(agent_out.logits, 0, rollout.rewards.shape[0] + 1)
    log_pi_a = agent_out.policy(np.s_[:-1]).log_prob(rollout.actions)  # [T, B]
    terminated = rollout.terminated.astype(jnp.float32)
    episode_end = jnp.logical_or(rollout.terminated, rollout.truncated).astype(jnp.float32)
    return jnp.exp(log_pi_a), terminated, episode_end


class BackwardLSTM(nn.Module):
    """An LSTM run from t = T−1 down to 0 whose carry is zeroed where `reset_t` is 1.

    One fused matmul per step ([x_t, h] @ W → 4 gates), the shape that dominates meta-training.
    matmul_dtype: "float32", or "bfloat16" to run that matmul on bf16 operands with f32
    accumulation (parameters, carries and gate nonlinearities stay f32), for accelerators with
    fast bf16 matmuls. On this 2-core CPU a lone bf16 matmul is 1.7× faster but the whole
    meta-step is 5% slower (operand conversions); meta-gradient cosine vs f32 > 0.99.
    """

    hidden_size: int
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, inputs: jax.Array, reset: jax.Array) -> jax.Array:
        """inputs: [T, B, D]; reset: [T, B] in {0, 1}. Returns hidden states [T, B, H]."""
        num_inputs = inputs.shape[-1]
        h = self.hidden_size
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (num_inputs + h, 4 * h), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros, (4 * h,), jnp.float32)
        batch = inputs.shape[1]
        carry0 = (jnp.zeros((batch, h), inputs.dtype), jnp.zeros((batch, h), inputs.dtype))

        dtype = jnp.dtype(self.matmul_dtype)
        kernel_mm = kernel.astype(dtype)

        def step(carry, xs):
            x_t, reset_t = xs
            keep = (1.0 - reset_t)[:, None]
            c, hid = carry[0] * keep, carry[1] * keep  # nothing crosses an episode boundary
            xh = jnp.concatenate([x_t, hid], axis=-1).astype(dtype)
            gates = jnp.matmul(xh, kernel_mm, preferred_element_type=jnp.float32) + bias
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            hid = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, hid), hid

        _, hidden = jax.lax.scan(step, carry0, (inputs, reset), reverse=True)
        return hidden


class LPGNetwork(nn.Module):
    """η: embedding φ, backward LSTM, heads π̂ and ŷ (appendix B.1)."""

    hidden_size: int = 256
    y_dim: int = 30
    y_softmax: bool = True
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, rewards, terminated, episode_end, discount, pi_a, y_t, y_tp1):
        """One backward pass over T steps of B trajectories.

        Args:
          rewards, pi_a: [T, B] r_t and π(a_t|s_t).
          terminated: [T, B] in {0, 1}, d_t (transition t reached a terminal state).
          episode_end: [T, B] in {0, 1}, terminated or truncated: resets the backward carry.
          discount: scalar or [T, B] γ.
          y_t, y_tp1: [T, B, m] y(s_t) and y of the true successor s_{t+1}.
        Returns:
          (pi_hat [T, B], y_hat [T, B, m]).
        """
        embed = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)], name="phi")
        x = step_inputs(rewards, terminated, discount, pi_a, embed(y_t)[..., 0], embed(y_tp1)[..., 0])
        hidden = BackwardLSTM(self.hidden_size, self.matmul_dtype, name="lstm")(x, episode_end)
        pi_hat = nn.Dense(1, name="pi_hat")(hidden)[..., 0]
        y_hat = nn.Dense(self.y_dim, name="y_hat")(hidden)
        if self.y_softmax:
            y_hat = jax.nn.softmax(y_hat, axis=-1)
        return pi_hat, y_hat


@dataclasses.dataclass(frozen=True)
class LPG(base.UpdateRule):
    """The LPG update rule (see module docstring).

    hidden_size: LSTM width (paper: 256).
    y_dim: m, length of the prediction vector (paper: 30); agents must output y logits of this size.
    y_softmax: False is the Fig. 7 ablation (y ∈ R^m, squared loss).
    use_baseline: Eq. 7's action-independent baseline f_θ (the agent's value head), meta-test only.
    matmul_dtype: operand dtype of the LSTM gate matmul, one of MATMUL_DTYPES (see BackwardLSTM).
    """

    KIND = "lpg"

    hidden_size: int = 256
    y_dim: int = 30
    y_softmax: bool = True
    use_baseline: bool = False
    matmul_dtype: str = "float32"
    y_costs: tuple[float, ...] = (0.1, 0.5, 1.0)

    def __post_init__(self):
        for name in ("hidden_size", "y_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LPG.{name} must be a positive integer, got {getattr(self, name)}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"LPG.matmul_dtype must be one of {MATMUL_DTYPES}, got {self.matmul_dtype!r}")
        # A JSON round trip (saved rules) turns the tuple into a list: normalise, then check.
        object.__setattr__(self, "y_costs", tuple(float(c) for c in self.y_costs))
        if not self.y_costs or any(not c > 0 for c in self.y_costs):
            raise ValueError(f"LPG.y_costs (the α_y grid) must be non-empty and positive, got {self.y_costs}")

    @property
    def output_spec(self) -> types.OutputSpec:
        # The value head only exists for Eq. 7's baseline (meta-test); meta-training's critic is
        # a separate network (lpg.meta.objective).
        return types.OutputSpec(y_dim=self.y_dim, value=self.use_baseline)

    @property
    def hyper_grid(self) -> dict[str, tuple[float, ...]]:
        """α_y, the weight of KL(y‖ŷ) in Eq. 2 (SPEC Table 3: {0.1, 0.5, 1})."""
        return {"y_cost": self.y_costs}

    @property
    def network(self) -> LPGNetwork:
        return LPGNetwork(self.hidden_size, self.y_dim, self.y_softmax, self.matmul_dtype)

    def init_params(self, key):
        t, b = 2, 1
        zeros = jnp.zeros((t, b))
        y = jnp.zeros((t, b, self.y_dim))
        return self.network.init(key, zeros, zeros, zeros, 0.99, zeros, y, y)

    def agent_y(self, y_logits: jax.Array) -> jax.Array:
        """The agent's prediction vector from its y head: softmax, or raw for the ablation."""
        return jax.nn.softmax(y_logits, axis=-1) if self.y_softmax else y_logits

    def targets(self, meta_params, state, rollout, agent_out, next_out, hyper) -> types.RuleOutput:
        del state
        pi_a, terminated, episode_end = trajectory_inputs(rollout, agent_out)  # [T, B] each
        chex.assert_axis_dimension(next_out.y, 0, rollout.rewards.shape[0])
        y_t = self.agent_y(agent_out.y[:-1])  # [T, B, m]
        y_tp1 = self.agent_y(next_out.y)  # [T, B, m] on the true s_{t+1}
        pi_hat, y_hat = self.network.apply(
            meta_params, rollout.rewards, terminated, episode_end, hyper.discount, pi_a, y_t, y_tp1)
        return types.RuleOutput(pi_hat=pi_hat, y_hat=y_hat)

    def agent_loss(self, meta_params, state, agent_out, rollout, targets, hyper):
        del meta_params, state  # η acts through the targets only (Eq. 2)
        log_pi_a = agent_out.policy(np.s_[:-1]).log_prob(rollout.actions)  # [T, B]
        pi_hat = targets.pi_hat
        logs = {}
        if self.use_baseline:
            baseline = agent_out.value[:-1]
            policy_loss = -jnp.mean(log_pi_a * (pi_hat - jax.lax.stop_gradient(baseline)))
            baseline_loss = 0.5 * jnp.mean((baseline - pi_hat) ** 2)
            logs["baseline_loss"] = baseline_loss
        else:
            policy_loss = -jnp.mean(log_pi_a * pi_hat)
            baseline_loss = 0.0
        if self.y_softmax:
            log_y = jax.nn.log_softmax(agent_out.y[:-1], axis=-1)
            y = jnp.exp(log_y)
            # KL(y_θ ‖ ŷ) = Σ y (log y − log ŷ); ŷ floored so log stays finite.
            y_loss = jnp.mean(jnp.sum(y * (log_y - jnp.log(jnp.maximum(targets.y_hat, 1e-8))), -1))
        else:
            y_loss = jnp.mean(jnp.sum((agent_out.y[:-1] - targets.y_hat) ** 2, axis=-1))
        loss = policy_loss + hyper.rule["y_cost"] * y_loss + baseline_loss
        # |π̂| and its spread: the first thing to look at when a rule meets rewards or horizons
        # far from its training tasks (launch/diagnose_transfer.py).
        logs.update(policy_loss=policy_loss, y_loss=y_loss, pi_hat_abs=jnp.mean(jnp.abs(pi_hat)),
                    pi_hat_std=jnp.std(pi_hat))
        return loss, logs
