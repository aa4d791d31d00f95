"""Agent networks (SPEC §1 "agent", §2 Table 3; LPG appendix A).

Every agent outputs, per observation s, (`types.AgentOutput`):
  * the policy head: logits of π_θ(a|s) over the A actions of a discrete environment, or the
    2·D parameters [mean | raw log-std] of a Gaussian over D-dimensional continuous actions
    (`lpg.distributions.DistributionSpec.num_outputs`; `AgentOutput.policy()` builds π);
and only the heads its update rule asks for (`types.OutputSpec`, `UpdateRule.output_spec`):
  * logits of the prediction vector y_θ(s) ∈ [0,1]^m (LPG applies the softmax, m = 30);
  * a state value V_θ(s) (A2C's critic, LPG-V, the baseline f_θ(s) of LPG Eq. 7).

Three architectures, chosen by `envs.task.AgentSpec.kind`:
  * "tabular": tables indexed by the integer state (logits [S, A], y [S, m], value [S]).
    The lookup is a gather, never a dense layer over a one-hot observation: SPEC §5 measured the
    one-hot version (up to 3,201 wide) dominating memory and time.
    The tables start at zero, so the initial policy is uniform and y is uniform.
  * "mlp": D(hidden...)-ReLU torso over the flattened observation.
  * "conv": C(conv_features...) 3x3 SAME convolutions with ReLU, flatten, then D(hidden...)-ReLU.
    The convolutions are im2col matmuls (`conv3x3_same`), not XLA convolutions: under the vmap
    over lifetimes (each with its own kernel) XLA:CPU runs the latter as slow grouped convolutions.

Networks accept any number of leading batch dimensions ([], [B], [T+1, B], ...): the trailing
`obs_shape` dimensions are the observation, the rest are flattened into one batch and restored.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from envs import task as task_lib
from lpg import types

# Invalid actions get this logit. Finite (not -inf), so log-softmax and the entropy p·log p stay
# finite: softmax gives them exactly zero probability, and 0 · (-1e9) = 0 rather than 0 · inf = NaN.
MASKED_LOGIT = -1e9


def mask_logits(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Sets the logits of invalid actions to `MASKED_LOGIT`.

    Args:
      logits: [..., A] policy logits.
      mask: bool [..., A] (broadcastable to `logits`), True for valid actions.
    Returns:
      [..., A] logits with invalid entries replaced.
    """
    return jnp.where(mask, logits, jnp.asarray(MASKED_LOGIT, logits.dtype))


class _Heads(nn.Module):
    """The policy head and the heads of `outputs` on top of a feature vector [N, F]."""

    num_actions: int
    outputs: types.OutputSpec

    @nn.compact
    def __call__(self, features: jax.Array) -> types.AgentOutput:
        # A small policy-head initialisation makes the initial policy close to uniform, like the
        # zero-initialised tables, so no lifetime starts with a near-deterministic policy.
        logits = nn.Dense(
            self.num_actions,
            kernel_init=nn.initializers.variance_scaling(0.01, "fan_in", "truncated_normal"),
            name="policy",
        )(features)
        y = nn.Dense(self.outputs.y_dim, name="y")(features) if self.outputs.y_dim else None
        value = nn.Dense(1, name="value")(features)[..., 0] if self.outputs.value else None
        return types.AgentOutput(logits=logits, y=y, value=value)


def _restore_batch(out: types.AgentOutput, batch_shape: tuple[int, ...]) -> types.AgentOutput:
    return jax.tree.map(lambda x: x.reshape(batch_shape + x.shape[1:]), out)


class TabularNetwork(nn.Module):
    """Tables of policy logits [S, A] and, per `outputs`, y logits [S, m] and values [S],
    gathered by state index."""

    num_states: int
    num_actions: int
    outputs: types.OutputSpec = types.OutputSpec()

    @nn.compact
    def __call__(self, obs: jax.Array) -> types.AgentOutput:
        """obs: int [...] state indices in [0, S). Returns outputs with leading dims [...]."""
        zeros = nn.initializers.zeros
        index = jnp.asarray(obs).astype(jnp.int32)
        # Gathers (their gradient a scatter-add): cost independent of the number of states.
        logits = self.param("logits", zeros, (self.num_states, self.num_actions))[index]
        y = value = None
        if self.outputs.y_dim:
            y = self.param("y", zeros, (self.num_states, self.outputs.y_dim))[index]
        if self.outputs.value:
            value = self.param("value", zeros, (self.num_states,))[index]
        return types.AgentOutput(logits=logits, y=y, value=value)


class MLPNetwork(nn.Module):
    """D(hidden...)-ReLU torso over the flattened observation, then the heads."""

    num_actions: int
    obs_shape: tuple[int, ...]
    hidden: tuple[int, ...] = ()
    outputs: types.OutputSpec = types.OutputSpec()

    @nn.compact
    def __call__(self, obs: jax.Array) -> types.AgentOutput:
        """obs: [..., *obs_shape]. Returns outputs with leading dims [...]."""
        batch_shape = _batch_shape(obs, self.obs_shape)
        x = jnp.asarray(obs, jnp.float32).reshape((-1, math.prod(self.obs_shape)))  # [N, D]
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return _restore_batch(_Heads(self.num_actions, self.outputs)(x), batch_shape)


def conv3x3_same(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """3x3 stride-1 SAME cross-correlation (what `nn.Conv(F, (3, 3), padding="SAME")` computes).

    Written as im2col: the 9 shifted views of the zero-padded input are concatenated on the
    channel axis and contracted with the kernel in one matmul. Why not `lax.conv_general_dilated`:
    the agents are trained as a `vmap` over lifetimes, each with its own kernel, and XLA:CPU runs
    the resulting grouped (feature_group_count = L) convolution, and its gradients, very slowly.
    Under vmap this version is a batched dot_general instead, which XLA:CPU runs well.

    Args:
      x: [..., H, W, C] inputs (any number of leading batch dims).
      kernel: [3, 3, C, F], flax's nn.Conv layout (kh, kw, in, out).
      bias: optional [F].
    Returns:
      [..., H, W, F].
    """
    *lead, height, width, channels = x.shape
    if kernel.shape[:3] != (3, 3, channels):
        raise ValueError(f"kernel {kernel.shape} does not fit a 3x3 conv of {channels} channels")
    padded = jnp.pad(x, [(0, 0)] * len(lead) + [(1, 1), (1, 1), (0, 0)])  # [..., H+2, W+2, C]
    # Output (r, c) reads padded rows r..r+2, columns c..c+2. Concatenating the views in (di, dj)
    # row-major order, channels innermost, matches the row order of kernel.reshape(9·C, F).
    patches = jnp.concatenate(
        [padded[..., di : di + height, dj : dj + width, :] for di in range(3) for dj in range(3)],
        axis=-1,
    )  # [..., H, W, 9·C]
    # Default precision, as nn.Conv: XLA:CPU computes f32 dots in full f32 whatever the setting
    # (measured: same error and speed for default/high/highest), so nothing to gain there.
    out = jnp.dot(patches, kernel.reshape(9 * channels, kernel.shape[-1]))  # [..., H, W, F]
    return out if bias is None else out + bias


class Conv3x3(nn.Module):
    """Drop-in for `nn.Conv(features, (3, 3), padding="SAME")` computed by `conv3x3_same`.

    Same parameters (kernel [3, 3, C, F], bias [F]), the same default initialisers, hence the same
    initial values for the same RNG and module name; only the XLA program differs.
    """

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [..., H, W, C]. Returns [..., H, W, features]."""
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return conv3x3_same(x, kernel, bias)


class ConvNetwork(nn.Module):
    """C(conv_features...) 3x3 SAME ReLU convolutions, flatten, D(hidden...)-ReLU, the heads.

    The convolutions are `Conv3x3` (im2col, fast on CPU under vmap over parameters), named
    "Conv_i" so the parameter tree is the one `nn.Conv` would give.
    """

    num_actions: int
    obs_shape: tuple[int, ...]  # (H, W, C)
    conv_features: tuple[int, ...]
    hidden: tuple[int, ...] = ()
    outputs: types.OutputSpec = types.OutputSpec()

    @nn.compact
    def __call__(self, obs: jax.Array) -> types.AgentOutput:
        """obs: [..., H, W, C]. Returns outputs with leading dims [...]."""
        batch_shape = _batch_shape(obs, self.obs_shape)
        x = jnp.asarray(obs, jnp.float32).reshape((-1, *self.obs_shape))  # [N, H, W, C]
        for i, features in enumerate(self.conv_features):
            x = nn.relu(Conv3x3(features, name=f"Conv_{i}")(x))  # [N, H, W, F_i]
        x = x.reshape((x.shape[0], -1))  # [N, H·W·F]
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return _restore_batch(_Heads(self.num_actions, self.outputs)(x), batch_shape)


def _batch_shape(obs: jax.Array, obs_shape: Sequence[int]) -> tuple[int, ...]:
    """Leading (batch) dims of `obs`, checking its trailing dims are `obs_shape`."""
    obs_shape = tuple(obs_shape)
    lead = obs.ndim - len(obs_shape)
    if lead < 0 or tuple(obs.shape[lead:]) != obs_shape:
        raise ValueError(f"observation shape {obs.shape} does not end in {obs_shape}")
    return tuple(obs.shape[:lead])


def make_network(
    spec: task_lib.AgentSpec,
    num_actions: int,
    num_states: int | None,
    outputs: types.OutputSpec = types.OutputSpec(),
    *,
    obs_shape: Sequence[int] | None = None,
) -> nn.Module:
    """Builds the agent network of an `AgentSpec`.

    Args:
      spec: architecture (kind, conv_features, hidden).
      num_actions: width of the policy head: A logits (masked actions still counted), or 2·D
        for D-dimensional continuous actions (`DistributionSpec.num_outputs`).
      num_states: S, required for "tabular" (observations are int state indices in [0, S)).
      outputs: the heads besides the policy (the update rule's `output_spec`).
      obs_shape: the unbatched observation shape, required for "mlp" (any shape, flattened) and
        "conv" ((H, W, C)); it tells the network which dims are batch dims. Ignored for "tabular"
        (scalar observations). An extra keyword, because the kind alone does not fix the rank:
        "random/small" feeds [H, W, C] grids to an MLP, the distractor chain a [22] vector.
    Returns:
      A flax module; `module.apply(params, obs)` gives an `AgentOutput` with obs's leading dims.
    """
    if spec.kind == "tabular":
        if num_states is None or num_states <= 0:
            raise ValueError(f"a tabular agent needs num_states > 0, got {num_states}")
        return TabularNetwork(num_states=int(num_states), num_actions=num_actions, outputs=outputs)
    if obs_shape is None:
        raise ValueError(f"a {spec.kind!r} agent needs obs_shape")
    obs_shape = tuple(int(d) for d in obs_shape)
    if spec.kind == "mlp":
        return MLPNetwork(
            num_actions=num_actions, obs_shape=obs_shape, hidden=tuple(spec.hidden), outputs=outputs
        )
    if spec.kind == "conv":
        if len(obs_shape) != 3:
            raise ValueError(f"a conv agent needs (H, W, C) observations, got {obs_shape}")
        return ConvNetwork(
            num_actions=num_actions,
            obs_shape=obs_shape,
            conv_features=tuple(spec.conv_features),
            hidden=tuple(spec.hidden),
            outputs=outputs,
        )
    raise ValueError(f"unknown agent kind {spec.kind!r}")
