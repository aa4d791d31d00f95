"""Evolved Policy Gradients: a learned loss L_φ over the agent's recent experience (Houthooft et al.
2018, arXiv:1802.04821; SPEC §3). φ (`meta_params`) are the loss network's parameters, evolved by ES
(`lpg.meta.es`); the agent minimises the loss by gradient descent (Eq. 2 and 4).

Per-step inputs (§3.3). Step t of a rollout (time convention of `lpg.types`) is described by

    e_t = [ norm(s_t), norm(a_t) or onehot(a_t), norm(r_t) (use_reward only), term_t, trunc_t ]
    p_t = π_θ(·|s_t): the A probabilities (discrete), or [μ | log σ] of the (pre-squash) Gaussian
    mem = the memory unit's output (below), the same vector at every step

with s_t flattened to `obs_size` numbers (layout: `EPG.env_inputs`). "norm" is a per-lifetime
running mean/std of the values over all *previous* rollouts of the lifetime (§4.1: "normalization
according to a running mean and standard deviation ... to all input data"), clipped to
±NORM_CLIP; it is frozen during an update, so it neither leaks later steps into step t nor
changes the gradient. One-hot actions and the two episode-end flags are used as they are; π's
outputs are bounded already (probabilities in [0, 1]; μ soft-bounded and log σ clipped by
`lpg.distributions`). The paper's single termination signal d_t is split into its two kinds (a
terminal state vs a time-limit cut), which the loss may treat differently. The policy enters only through p_t: the paper feeds "the policy distribution", not
log π(a_t|s_t), and so does this rule (`AgentOutput.logits` is where the gradient reaches θ).
With `use_reward=False` (the paper's reward-free loss, §3.3 and §4.2) the reward is no input at
all, nor part of the stored buffer or of the running statistics.

Loss network (§3.3, §4.1, Fig. 2). For every step t, the temporal convolutions run over the
buffer of the last N = `buffer_length` steps ending at t, x_{t−N+1..t}, x_i = [e_i, p_i, v_i,
v_i · mem], v_i ∈ {0, 1} a validity flag (steps before the lifetime's start are all-zero):

    h1 = LeakyReLU(Conv1d(x, kernel 8, stride 7, 8 channels))          [18, 8]    (N = 128)
    h2 = LeakyReLU(Conv1d(h1, kernel 4, stride 2, 8 channels))         [8, 8]
    f_context,t = LeakyReLU(Dense(flatten(h2), 32))                    [32]
    L_t = w · LeakyReLU(Dense([f_context,t, e_t, p_t, mem], 16))       scalar
    L_φ = mean_{t, b} L_t                                                over the [T, B] rollout.

The output layer has no bias: a constant in L_φ moves neither θ nor the memory, so it would only
be a dead dimension for ES. The paper applies Leaky ReLU to the conv layers; we use it after the
context layer too (its activation is unstated). `activation="silu"` swaps in a smooth one: with
Leaky ReLU, L_φ is piecewise linear, so the gradients it gives θ and the memory depend on φ's
biases only through which units are active, and their backpropagated meta-gradients are exactly
0 (ES, EPG's outer loop, does not differentiate and moves them all the same).

The strided windows are right-aligned (the last one ends at step t), so step t is always in the
context; when (N − kernel) is not a multiple of the stride the oldest (N − k) mod s steps of the
buffer are not read (1 step for the paper's 128/8/7). The paper computes one context over the
buffer ending at t and gives it to all M steps of the batch ending at t (§3.3, Fig. 2), so a
step's loss also sees the later steps of its batch (§4.6: "history (and future experience)");
here each step gets its own causal window, so L_t depends on steps ≤ t only
(tests/lpg/test_epg.py). Computed as one stride-1 convolution over the
whole [N−1+T] sequence, gathered at every step's strides (exactly the strided convolution of each
window, without materialising T windows).

Buffer across rollouts. Windows reach back over rollout boundaries: the rule state keeps the
trailing N−1 steps (`EPGState.history`, [N−1, B, ...], raw values) and `targets` hands them to
the loss (in `RuleOutput.aux`, so minibatches over environments slice them too). The policy
outputs p_i of those past steps are stored as they were when the step was collected (θ of that
update), constants for the current gradient: the rule sees agent outputs only on the current
rollout, so they cannot be recomputed with the current θ. Everything else there is θ-independent.

Memory unit (§3.3, §4.1). "One layer with constant inputs", 32 units, tanh: mem = tanh(W·1 + b),
W ∈ R^{1×32}, b ∈ R^32, small random W and b = 0 at the start of every lifetime. It is part of
the agent, not of φ: it does not change the policy, it is an input of L_φ, and it is trained by
the inner loop together with θ, by the gradient of the same loss (Eq. 6), ∂/∂(W, b) of
(1 − α) L_φ (L_PPO does not read it), with its own Adam at the agent's step size α_lr. It takes
as many steps per rollout as the agent (epochs × minibatches, minibatches in a fixed order), in
`update_state`, so at the agent outputs under the θ before the update (the only ones a rule
sees), with L_φ's other inputs as the agent's steps had them; it lives in the
per-lifetime rule state (`init_state` / `update_state`) and so persists across updates of a
lifetime and starts afresh with every new lifetime.

PPO guidance (Eq. 6). The agent minimises L̂ = (1 − α) L_φ + α L_PPO, α = `hyper.rule
["pg_guidance"]` (grid (0,): meta-test uses L_φ alone; ES anneals α 1 → 0 over the first
generations). L_PPO is `lpg.rules.ppo.PPO`'s clipped surrogate + value loss − entropy bonus
(targets and loss reused as they are), so agents get a value head.

Inner loop (Algorithm 1). Each rollout of T steps in B environments gives `epochs` × `minibatches`
Adam steps (minibatches split the environments, `lpg.agent.agent_update`); with B = 1, T = M it is
the paper's "update every M steps". The paper's worker is one environment stream; B streams here
keep B buffers, so the rule is built for a fixed `num_envs` (like the observation and action
sizes, it fixes parameter and state shapes: `EPG.for_task` fills them in).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from envs import base as env_base
from lpg import distributions
from lpg import types
from lpg.rules import base
from lpg.rules import ppo

# Clip of the running-normalised inputs: a first rollout (no statistics yet, identity) or a rare
# outlier cannot feed the loss network numbers far outside what it was evolved on.
NORM_CLIP = 10.0
NORM_EPS = 1e-6  # variance floor of the normalisation (constant input dimensions)
# Adam's ε inside the square root of the memory optimiser, > 0 for the reason of
# `lpg.agent.ADAM_EPS_ROOT` (finite derivatives through a step whose gradient is exactly 0,
# e.g. every step at α = 1); not imported from there because lpg.agent imports the rules.
MEMORY_ADAM_EPS_ROOT = 1e-8
MEMORY_INIT_SCALE = 0.01  # std of W at θ0: the memory starts near 0, as the paper's code does
ACTIVATIONS = {"leaky_relu": nn.leaky_relu, "silu": nn.silu}


# ----------------------------------------------------------------------------------------------
# Running normalisation
# ----------------------------------------------------------------------------------------------


@flax.struct.dataclass
class RunningStats:
    """Mean and variance of K input dimensions over all samples seen so far.

    count: [] number of samples (0: nothing seen, `normalise` is the identity).
    mean, var: [K].
    """

    count: jax.Array
    mean: jax.Array
    var: jax.Array


def init_running_stats(size: int) -> RunningStats:
    return RunningStats(count=jnp.zeros((), jnp.float32), mean=jnp.zeros((size,), jnp.float32),
                        var=jnp.ones((size,), jnp.float32))


def update_running_stats(stats: RunningStats, samples: jax.Array) -> RunningStats:
    """Merges samples [n, K] into the statistics (Chan et al.'s parallel update, exact)."""
    chex.assert_rank(samples, 2)
    n = jnp.float32(samples.shape[0])
    batch_mean = jnp.mean(samples, axis=0)
    batch_var = jnp.var(samples, axis=0)
    total = stats.count + n
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * n / total
    # var · count is 0 at the start, where var holds the identity's 1.
    sum_sq = stats.var * stats.count + batch_var * n + jnp.square(delta) * stats.count * n / total
    return RunningStats(count=total, mean=mean, var=sum_sq / total)


def normalise(stats: RunningStats, x: jax.Array) -> jax.Array:
    """(x − mean) / std, clipped to ±NORM_CLIP: x [..., K]."""
    return jnp.clip((x - stats.mean) / jnp.sqrt(stats.var + NORM_EPS), -NORM_CLIP, NORM_CLIP)


# ----------------------------------------------------------------------------------------------
# The loss network L_φ and the memory unit
# ----------------------------------------------------------------------------------------------


def _num_windows(length: int, kernel: int, stride: int) -> int:
    """Outputs of a VALID strided convolution over `length` steps."""
    return (length - kernel) // stride + 1


class LossNetwork(nn.Module):
    """L_φ of §3.3 / Fig. 2 on precomputed inputs (module docstring).

    Attributes: the static widths of `EPG` (conv kernels/strides/channels, context and hidden
    sizes, buffer length N).
    """

    buffer_length: int
    conv1_kernel: int
    conv1_stride: int
    conv1_channels: int
    conv2_kernel: int
    conv2_stride: int
    conv2_channels: int
    context_size: int
    hidden_size: int
    activation: str = "leaky_relu"

    @nn.compact
    def __call__(self, sequence: jax.Array, step_inputs: jax.Array) -> jax.Array:
        """Per-step losses of the last T steps of a sequence.

        Args:
          sequence: [N−1+T, B, F_conv] the conv inputs x_i, oldest first: the N−1 buffered steps
            before the rollout, then its T steps.
          step_inputs: [T, B, F_step] [e_t, p_t, mem] of the rollout's steps.
        Returns:
          [T, B] L_t; L_t reads sequence rows t .. t+N−1 (its window) and step_inputs[t] only.
        """
        n, (k1, s1), (k2, s2) = self.buffer_length, (self.conv1_kernel, self.conv1_stride), (
            self.conv2_kernel, self.conv2_stride)
        act = ACTIVATIONS[self.activation]
        num_steps = step_inputs.shape[0]
        chex.assert_axis_dimension(sequence, 0, n - 1 + num_steps)
        n1 = _num_windows(n, k1, s1)
        # Stride-1 conv over the whole sequence: h1[p] reads rows p .. p+k1−1.
        x = jnp.swapaxes(sequence, 0, 1)  # [B, N−1+T, F]
        h1 = act(nn.Conv(self.conv1_channels, (k1,), padding="VALID", name="conv1")(x))
        # Window of step t = rows t .. t+N−1; its i-th strided position (right-aligned, the last
        # one ending at row t+N−1) starts at row t + (N−k1) − s1·(n1−1−i).
        starts = (np.arange(num_steps)[:, None] + (n - k1)
                  - s1 * (n1 - 1 - np.arange(n1))[None, :])  # [T, n1]
        h1 = h1[:, starts]  # [B, T, n1, C1]
        batch = h1.shape[0]
        h1 = h1.reshape((batch * num_steps, n1, self.conv1_channels))
        # Right-align the second conv too: drop the (n1 − k2) mod s2 oldest positions.
        h1 = h1[:, (n1 - k2) % s2:]
        h2 = act(nn.Conv(self.conv2_channels, (k2,), strides=(s2,), padding="VALID",
                         name="conv2")(h1))  # [B·T, n2, C2]
        context = act(nn.Dense(self.context_size, name="context")(h2.reshape((batch * num_steps, -1))))
        context = jnp.swapaxes(context.reshape((batch, num_steps, self.context_size)), 0, 1)
        hidden = act(nn.Dense(self.hidden_size, name="hidden")(
            jnp.concatenate([context, step_inputs], axis=-1)))
        # No output bias: a constant added to L_φ changes no gradient (θ's or the memory's), so
        # it would only be a dead dimension for ES.
        return nn.Dense(1, use_bias=False, name="loss")(hidden)[..., 0]  # [T, B]


def memory_output(memory_params: dict) -> jax.Array:
    """mem = tanh(W·1 + b): [memory_size] (§4.1: one tanh layer with constant input)."""
    return jnp.tanh(jnp.sum(memory_params["kernel"], axis=0) + memory_params["bias"])


def _memory_optimiser() -> optax.GradientTransformation:
    """Adam with unit step; `update_state` scales by the traced α_lr, as the agent's optimiser."""
    return optax.adam(1.0, eps_root=MEMORY_ADAM_EPS_ROOT)


@flax.struct.dataclass
class EPGState:
    """EPG's per-lifetime state (`AgentState.rule_state`).

    memory_params: {"kernel": [1, M], "bias": [M]} the memory unit (W, b).
    memory_opt_state: its Adam state.
    history: [N−1, B, F_rec] raw records [e | p | v] of the N−1 steps before the next rollout
      (layout `EPG.record_size`); all-zero (v = 0) before the lifetime's start.
    input_stats: running statistics of the normalised inputs [s (, a continuous)(, r)].
    """

    memory_params: dict
    memory_opt_state: Any
    history: jax.Array
    input_stats: RunningStats


def _take_envs(tree: Any, env_index: jax.Array) -> Any:
    """Environments `env_index` of every leaf (B on axis 1)."""
    return jax.tree.map(lambda x: jnp.take(x, env_index, axis=1), tree)


# ----------------------------------------------------------------------------------------------
# The rule
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EPG(base.UpdateRule):
    """The EPG learned loss as an update rule (module docstring); `meta_params` = φ.

    Environment shapes (they size φ and the state; `EPG.for_task` reads them from a task):
      obs_size: observation size, flattened (a tabular state index counts as 1).
      action_size: number of discrete actions A, or action dimension D.
      discrete: categorical policy (one-hot actions, p = probabilities) or a (tanh-)Gaussian
        one (actions as they are, p = [μ | log σ]).
      num_envs: B, environments per rollout (one buffer each).
    The loss network (paper §4.1 defaults; shrink for CPU presets):
      buffer_length: N, steps each step's temporal convolutions read (paper 128).
      conv1_kernel/stride/channels: 8 / 7 / 8; conv2_kernel/stride/channels: 4 / 2 / 8.
      context_size: f_context width (32); hidden_size: the per-step MLP's hidden layer (16).
      memory_size: the memory unit's width (32).
      use_reward: r_t is an input (True) or not at all (False; the paper's reward-free loss).
      activation: "leaky_relu" (the paper's) or "silu" (smooth: every leaf of φ then gets a
        backpropagated meta-gradient; with leaky ReLU the biases' are exactly 0, see above).
    Inner loop:
      epochs, minibatches: optimiser steps per rollout (minibatches split the B environments).
      clip_epsilon, normalize_advantages, clip_value: the guidance PPO's (`lpg.rules.ppo.PPO`).
      max_grad_norm: global-norm clip of the agent's gradient (0: none); PPO's 0.5 by default,
        which also bounds the steps a poorly evolved φ can take.
    """

    KIND = "epg"

    obs_size: int
    action_size: int
    discrete: bool
    num_envs: int
    buffer_length: int = 128
    conv1_kernel: int = 8
    conv1_stride: int = 7
    conv1_channels: int = 8
    conv2_kernel: int = 4
    conv2_stride: int = 2
    conv2_channels: int = 8
    context_size: int = 32
    hidden_size: int = 16
    memory_size: int = 32
    use_reward: bool = True
    activation: str = "leaky_relu"
    epochs: int = 1
    minibatches: int = 1
    clip_epsilon: float = 0.2
    normalize_advantages: bool = True
    clip_value: bool = True
    max_grad_norm: float = 0.5

    def __post_init__(self):
        for name in ("obs_size", "action_size", "num_envs", "buffer_length", "conv1_kernel",
                     "conv1_stride", "conv1_channels", "conv2_kernel", "conv2_stride",
                     "conv2_channels", "context_size", "hidden_size", "memory_size", "epochs",
                     "minibatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EPG.{name} must be an int >= 1, got {value!r}")
        for name in ("discrete", "use_reward", "normalize_advantages", "clip_value"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"EPG.{name} must be True or False, got {getattr(self, name)!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"EPG.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.buffer_length < self.conv1_kernel:
            raise ValueError(f"EPG.buffer_length={self.buffer_length} is shorter than "
                             f"conv1_kernel={self.conv1_kernel}")
        n1 = _num_windows(self.buffer_length, self.conv1_kernel, self.conv1_stride)
        if n1 < self.conv2_kernel:
            raise ValueError(f"EPG: the first conv gives {n1} positions over buffer_length="
                             f"{self.buffer_length}, fewer than conv2_kernel={self.conv2_kernel}")
        if self.num_envs % self.minibatches:
            raise ValueError(f"EPG.minibatches={self.minibatches} must divide num_envs={self.num_envs}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise ValueError(f"EPG.max_grad_norm must be a finite number >= 0, got {self.max_grad_norm!r}")
        _ = self.ppo  # PPO validates clip_epsilon

    @classmethod
    def for_task(cls, task: Any, num_envs: int, **config: Any) -> EPG:
        """The rule sized for `task` (an `envs.task.Task`) and `num_envs` environments per rollout.

        Reads the observation shape and the action space of one sampled lifetime (the spaces
        are fixed within a task); `config` sets the other fields.
        """
        with jax.ensure_compile_time_eval():  # concrete spaces even under an outer trace
            key = jax.random.key(0)
            params = jax.jit(task.sample_params)(key)
        obs = jax.eval_shape(lambda k: task.env.reset(k, params)[0], key)
        space = task.env.action_space(params)
        discrete = isinstance(space, env_base.Discrete)
        action_size = int(space.n) if discrete else int(np.prod(space.shape))
        return cls(obs_size=int(np.prod(obs.shape)), action_size=action_size, discrete=discrete,
                   num_envs=num_envs, **config)

    # ------------------------------------------------------------------------- interface

    @property
    def ppo(self) -> ppo.PPO:
        """The guidance loss L_PPO (Eq. 6)."""
        return ppo.PPO(clip_epsilon=self.clip_epsilon, epochs=self.epochs,
                       minibatches=self.minibatches, normalize_advantages=self.normalize_advantages,
                       clip_value=self.clip_value, max_grad_norm=self.max_grad_norm)

    @property
    def output_spec(self) -> types.OutputSpec:
        return types.OutputSpec(value=True)  # L_PPO's critic

    @property
    def hyper_grid(self) -> dict[str, tuple[float, ...]]:
        """α of Eq. 6: 0 at meta-test (L_φ alone); the ES trainer anneals it 1 → 0."""
        return {"pg_guidance": (0.0,)}

    @property
    def num_epochs(self) -> int:
        return self.epochs

    @property
    def num_minibatches(self) -> int:
        return self.minibatches

    @property
    def agent_grad_clip(self) -> float | None:
        return self.max_grad_norm or None

    @property
    def network(self) -> LossNetwork:
        return LossNetwork(
            buffer_length=self.buffer_length, conv1_kernel=self.conv1_kernel,
            conv1_stride=self.conv1_stride, conv1_channels=self.conv1_channels,
            conv2_kernel=self.conv2_kernel, conv2_stride=self.conv2_stride,
            conv2_channels=self.conv2_channels, context_size=self.context_size,
            hidden_size=self.hidden_size, activation=self.activation)

    # ---------------------------------------------------------------- input layout

    @property
    def num_normalised(self) -> int:
        """K, the running-normalised entries at the front of e: s (, a continuous)(, r)."""
        return self.obs_size + (0 if self.discrete else self.action_size) + int(self.use_reward)

    @property
    def env_input_size(self) -> int:
        """|e_t| = K + (A one-hot) + 2 episode-end flags."""
        return self.num_normalised + (self.action_size if self.discrete else 0) + 2

    @property
    def policy_input_size(self) -> int:
        """|p_t| = A probabilities or 2·D (μ, log σ)."""
        return self.action_size if self.discrete else 2 * self.action_size

    @property
    def record_size(self) -> int:
        """A buffered step [e | p | v]."""
        return self.env_input_size + self.policy_input_size + 1

    def env_inputs(self, rollout: types.Rollout) -> jax.Array:
        """Raw e_t [T, B, env_input_size] = [s, (a), (r) | (onehot a), term, trunc]; the first
        `num_normalised` entries are normalised later with the state's running statistics."""
        num_steps, num_envs = rollout.rewards.shape
        obs = jnp.reshape(rollout.observations[:-1], (num_steps, num_envs, -1)).astype(jnp.float32)
        chex.assert_axis_dimension(obs, 2, self.obs_size)
        normalised, fixed = [obs], []
        if self.discrete:
            chex.assert_shape(rollout.actions, (num_steps, num_envs))
            fixed.append(jax.nn.one_hot(rollout.actions, self.action_size, dtype=jnp.float32))
        else:
            chex.assert_shape(rollout.actions, (num_steps, num_envs, self.action_size))
            normalised.append(rollout.actions.astype(jnp.float32))
        if self.use_reward:
            normalised.append(rollout.rewards[..., None].astype(jnp.float32))
        fixed += [rollout.terminated[..., None].astype(jnp.float32),
                  rollout.truncated[..., None].astype(jnp.float32)]
        return jnp.concatenate(normalised + fixed, axis=-1)

    def policy_inputs(self, agent_out: types.AgentOutput) -> jax.Array:
        """p_t [T, B, policy_input_size] of the rollout's T steps (agent_out has T+1)."""
        policy = agent_out.policy(np.s_[:-1])
        if self.discrete:
            if not isinstance(policy, distributions.MaskedCategorical):
                raise ValueError(
                    f"EPG(discrete=True) needs a categorical policy, got {type(policy).__name__}")
            probs = policy.probs
            chex.assert_axis_dimension(probs, -1, self.action_size)
            return probs
        if isinstance(policy, distributions.MaskedCategorical):
            raise ValueError("EPG(discrete=False) needs a Gaussian or tanh-Gaussian policy")
        shape = policy.batch_shape + (self.action_size,)
        return jnp.concatenate([jnp.broadcast_to(policy.mean, shape),
                                jnp.broadcast_to(policy.log_std, shape)], axis=-1)

    def records(self, rollout: types.Rollout, agent_out: types.AgentOutput) -> jax.Array:
        """Raw buffer records [e | p | v = 1] of the rollout's steps: [T, B, record_size]."""
        env = self.env_inputs(rollout)
        valid = jnp.ones(env.shape[:-1] + (1,), jnp.float32)
        return jnp.concatenate([env, self.policy_inputs(agent_out), valid], axis=-1)

    def loss_inputs(
        self, state: EPGState, agent_out: types.AgentOutput, rollout: types.Rollout,
        history: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """(sequence [N−1+T, B, F_conv], step_inputs [T, B, F_step]) of `LossNetwork`.

        history: [N−1, B, record_size] the buffered steps before the rollout.
        F_conv = record_size + memory_size ([e, p, v, v·mem]); F_step = F_conv − 1 ([e, p, mem]).
        """
        current = self.records(rollout, agent_out)  # [T, B, R], p differentiable w.r.t. θ
        chex.assert_shape(history, (self.buffer_length - 1, current.shape[1], self.record_size))
        records = jnp.concatenate([history.astype(jnp.float32), current], axis=0)  # [N−1+T, B, R]
        k = self.num_normalised
        valid = records[..., -1:]
        # Padding (v = 0) must stay exactly 0 after normalisation.
        normalised = normalise(state.input_stats, records[..., :k]) * valid
        memory = memory_output(state.memory_params)  # [M]
        memory = jnp.broadcast_to(memory, records.shape[:-1] + memory.shape) * valid
        sequence = jnp.concatenate([normalised, records[..., k:], memory], axis=-1)
        num_steps = current.shape[0]
        step = sequence[-num_steps:]
        step_inputs = jnp.concatenate([step[..., :self.record_size - 1], step[..., self.record_size:]],
                                      axis=-1)  # drop v (always 1 here)
        return sequence, step_inputs

    def per_step_losses(
        self, meta_params: Any, state: EPGState, agent_out: types.AgentOutput,
        rollout: types.Rollout, history: jax.Array,
    ) -> jax.Array:
        """L_t [T, B] (module docstring); history [N−1, B, record_size] as in `loss_inputs`."""
        sequence, step_inputs = self.loss_inputs(state, agent_out, rollout, history)
        return self.network.apply(meta_params, sequence, step_inputs)

    def learned_loss(self, meta_params, state, agent_out, rollout, history) -> jax.Array:
        """L_φ = mean over [T, B] of `per_step_losses`."""
        return jnp.mean(self.per_step_losses(meta_params, state, agent_out, rollout, history))

    # ---------------------------------------------------------------- UpdateRule

    def init_params(self, key: jax.Array) -> Any:
        num_steps = 1
        sequence = jnp.zeros((self.buffer_length - 1 + num_steps, 1, self.record_size + self.memory_size))
        step_inputs = jnp.zeros((num_steps, 1, self.record_size - 1 + self.memory_size))
        return self.network.init(key, sequence, step_inputs)

    def init_state(self, key: jax.Array, agent_params: Any) -> EPGState:
        """A fresh lifetime: new memory (W ~ N(0, 0.01²), b = 0), empty buffer and statistics."""
        del agent_params
        memory_params = dict(
            kernel=MEMORY_INIT_SCALE * jax.random.normal(key, (1, self.memory_size), jnp.float32),
            bias=jnp.zeros((self.memory_size,), jnp.float32))
        return EPGState(
            memory_params=memory_params,
            memory_opt_state=_memory_optimiser().init(memory_params),
            history=jnp.zeros((self.buffer_length - 1, self.num_envs, self.record_size), jnp.float32),
            input_stats=init_running_stats(self.num_normalised))

    def targets(self, meta_params, state, rollout, agent_out, next_out, hyper) -> types.RuleOutput:
        """PPO's targets (GAE advantages, λ-returns, θ_old's log π and V) with the buffered steps
        before the rollout: aux = {"ppo": PPO's aux, "history": [N−1, B, record_size]}."""
        del meta_params
        num_envs = rollout.rewards.shape[1]
        if state.history.shape[1] != num_envs:
            raise ValueError(f"EPG was built for num_envs={state.history.shape[1]} buffers, "
                             f"the rollout has B={num_envs} environments")
        ppo_targets = self.ppo.targets({}, None, rollout, agent_out, next_out, hyper)
        return ppo_targets.replace(aux=dict(ppo=ppo_targets.aux, history=state.history))

    def agent_loss(self, meta_params, state, agent_out, rollout, targets, hyper):
        """L̂ = (1 − α) L_φ + α L_PPO (Eq. 6); logs both terms and PPO's diagnostics."""
        alpha = hyper.rule["pg_guidance"]
        epg_loss = self.learned_loss(meta_params, state, agent_out, rollout, targets.aux["history"])
        ppo_loss, ppo_logs = self.ppo.agent_loss(
            {}, None, agent_out, rollout, targets.replace(aux=targets.aux["ppo"]), hyper)
        loss = (1.0 - alpha) * epg_loss + alpha * ppo_loss
        logs = {f"ppo_{name}": value for name, value in ppo_logs.items()}
        logs.update(epg_loss=epg_loss, ppo_loss=ppo_loss, pg_guidance=alpha)
        return loss, logs

    def update_state(self, meta_params, state, rollout, agent_out, targets, hyper) -> EPGState:
        """After an agent update on `rollout`: the memory's Adam steps on (1 − α) L_φ, then the
        buffer advanced by the rollout's records and the running statistics by its inputs."""
        alpha = hyper.rule["pg_guidance"]
        history = targets.aux["history"]
        num_envs = rollout.rewards.shape[1]
        size = num_envs // self.minibatches
        # The agent's minibatches in a fixed order (update_state has no key to shuffle with).
        env_index = jnp.tile(jnp.arange(num_envs).reshape(self.minibatches, size), (self.epochs, 1))
        optimiser = _memory_optimiser()
        mask = rollout.action_mask

        def memory_step(carry, index):
            memory_params, opt_state = carry
            mb_rollout = _take_envs(rollout.replace(action_mask=None), index)
            if mask is not None:
                mb_rollout = mb_rollout.replace(action_mask=jnp.take(mask, index, axis=0))
            mb_out, mb_history = _take_envs((agent_out, history), index)

            def loss_of_memory(params):
                mb_state = state.replace(memory_params=params)
                return (1.0 - alpha) * self.learned_loss(
                    meta_params, mb_state, mb_out, mb_rollout, mb_history)

            grads = jax.grad(loss_of_memory)(memory_params)
            updates, opt_state = optimiser.update(grads, opt_state, memory_params)
            updates = jax.tree.map(lambda u: hyper.learning_rate * u, updates)
            return (optax.apply_updates(memory_params, updates), opt_state), None

        (memory_params, opt_state), _ = jax.lax.scan(
            memory_step, (state.memory_params, state.memory_opt_state), env_index)

        records = self.records(rollout, agent_out)  # p as it is now: stale from here on
        history = jnp.concatenate([history, records], axis=0)[records.shape[0]:]
        samples = records[..., :self.num_normalised].reshape((-1, self.num_normalised))
        return EPGState(memory_params=memory_params, memory_opt_state=opt_state, history=history,
                        input_stats=update_running_stats(state.input_stats, samples))
