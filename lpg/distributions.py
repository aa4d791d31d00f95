"""Action distributions π(·|s): policy-head outputs → something to sample, score and regularise.

Used by agents (acting) and update rules (A2C, PPO, LPG, learned losses) so that discrete and
continuous policies share one small interface (`Distribution`):

    sample(key) -> a                 one action per batch element
    log_prob(a) -> log π(a)          summed over the action dimension for continuous actions
    sample_and_log_prob(key)         both at once (for TanhGaussian without inverting tanh)
    entropy() -> H[π]                in nats
    mode() -> a deterministic action (greedy evaluation)
    kl(other) -> KL(self ‖ other)

Three distributions, all frozen `flax.struct.dataclass` pytrees of arrays (so they can cross
`jit`/`vmap` boundaries) with any leading batch dims [..., ] (e.g. [T+1, B]):
  * `MaskedCategorical(logits [..., A], mask [..., A])`: invalid actions have probability exactly 0
    and are never sampled (discrete spaces; grid worlds mask 9 of 18 actions in some lifetimes).
  * `Gaussian(mean [..., D], log_std [..., D])`: diagonal Normal on R^D.
  * `TanhGaussian(mean, log_std, low, high)`: a diagonal Normal on pre-squash u ∈ R^D pushed through
    a = c + h·tanh(u), c = (high + low)/2, h = (high − low)/2, so every action lies in the Box
    (Haarnoja et al. 2018, "Soft Actor-Critic", appendix C).

`DistributionSpec` says how many head outputs a policy needs for a gymnax action space and builds
the distribution from them (`for_action_space` is the one-call shortcut):
  * `Discrete(n)`: n logits.
  * `Box(low, high, (D,))`: 2·D state-dependent outputs [mean | raw log-std], log-std clipped to
    [log_std_min, log_std_max] = [-5, 2] by default. State-dependent (rather than a separate
    state-independent parameter) because the whole policy then lives in one head array, which is
    what `AgentOutput.logits` and every rule already carry; a network that wants a
    state-independent σ learns it in the head's bias.

The maths with a single right answer (Normal sampling/log-density/entropy/KL, categorical
normalisation/entropy/KL, the stable tanh log-det) is delegated to distrax, which works unchanged
with jax 0.10.2; what is specific to policies (masks, bounds, the clipped inverse, the entropy of
the squashed Gaussian, modes) is written here. Callers only see the classes of this module.
No jit/vmap inside: the caller composes them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol

import chex
import distrax
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from envs import base as env_base

# Logit given to invalid actions (the same value as `lpg.networks.MASKED_LOGIT`). Finite, not -inf,
# so log-softmax, p·log p and KL stay finite: softmax maps it to exactly 0 in float32/bfloat16.
MASKED_LOGIT = -1e9

# Default clipping range of the log standard deviation built from head outputs:
# σ ∈ [e^-5, e^2] ≈ [0.0067, 7.4].
LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0

# Soft bound on the pre-squash mean of a TanhGaussian built from head outputs: μ = B·tanh(m / B).
# Why: float32 tanh rounds to ±1 once |u| ≳ 9, so a rollout's stored action a = tanh(u) can only
# be inverted (`TanhGaussian.log_prob`) up to |u| ≤ 8.3. An unbounded μ that drifts past that with
# a small σ makes the inverted u' sit many σ from μ: log-probs of −1e4, PPO ratios of exp(±1e3) =
# inf and a NaN update (PPO on MJX inverted_pendulum diverged so at 1M steps). With |μ| < 5 the
# action a = tanh(μ + σε) stays invertible to ~1e-3 in u wherever the policy puts its mass, and
# tanh(5) = 0.99991 still reaches the bounds. Near 0 the map is the identity (slope 1).
TANH_MEAN_BOUND = 5.0

# Gauss–Hermite nodes for E[log(1 − tanh² u)] in `TanhGaussian.entropy` (accuracy in its docstring).
TANH_ENTROPY_NODES = 64

CATEGORICAL = "categorical"
GAUSSIAN = "gaussian"
TANH_GAUSSIAN = "tanh_gaussian"


class Distribution(Protocol):
    """What agents and rules may call on any distribution of this module. Shapes: batch [...]."""

    def sample(self, key: jax.Array) -> jax.Array: ...

    def log_prob(self, value: jax.Array) -> jax.Array: ...

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]: ...

    def entropy(self) -> jax.Array: ...

    def mode(self) -> jax.Array: ...

    def kl(self, other: Any) -> jax.Array: ...


# ----------------------------------------------------------------------------------------------
# Discrete
# ----------------------------------------------------------------------------------------------


@flax.struct.dataclass
class MaskedCategorical:
    """Categorical π(a) ∝ m_a · exp(ℓ_a) over A actions, with m the validity mask.

        log π(a) = ℓ_a − log Σ_{b valid} exp(ℓ_b)   (a valid),     π(a) = 0   (a invalid).

    An action is invalid if `mask` is False there or its logit is −inf. Invalid logits are replaced
    by `MASKED_LOGIT` before anything else, so whatever they held (−1e9, −inf) log-probs, entropy,
    KL and all gradients stay finite, and no gradient reaches them. Sampling is Gumbel-max over the
    valid actions only (invalid ones compete with −inf), so they are never drawn. A row with no
    valid action at all (never produced by our environments) falls back to all A actions valid,
    i.e. uniform, rather than NaN.

    Attributes:
      logits: [..., A] unnormalised logits ℓ.
      mask: bool, broadcastable to [..., A], True for valid actions; None means all valid.
      premasked: static; True promises that invalid logits already hold MASKED_LOGIT and none is
        −inf (agent heads after `lpg.networks.mask_logits`), so the logits are used as they are.
        Why it exists: the extra select of the general path changes how XLA fuses the agent
        update, and a lifetime's losses then differ in the last bit between running alone and
        in a vmapped batch; with it they are bit-identical (tests/lpg/test_evaluation.py).
    """

    logits: jax.Array
    mask: Any = None
    premasked: bool = flax.struct.field(pytree_node=False, default=False)

    def _masked(self) -> tuple[jax.Array, jax.Array]:
        """(logits with invalid entries at MASKED_LOGIT [..., A], valid bool [..., A])."""
        logits = jnp.asarray(self.logits)
        if self.premasked:
            return logits, logits > MASKED_LOGIT / 2
        valid = ~jnp.isneginf(logits)
        if self.mask is not None:
            valid = valid & jnp.broadcast_to(self.mask, logits.shape)
        masked_logits = jnp.where(valid, logits, jnp.asarray(MASKED_LOGIT, logits.dtype))
        # All-invalid rows become uniform: their masked logits are all equal already.
        valid = valid | ~jnp.any(valid, axis=-1, keepdims=True)
        return masked_logits, valid

    def _distrax(self) -> distrax.Categorical:
        return distrax.Categorical(logits=self._masked()[0])

    @property
    def num_actions(self) -> int:
        return self.logits.shape[-1]

    @property
    def log_probs(self) -> jax.Array:
        """[..., A] normalised log π(a); ≈ MASKED_LOGIT (finite) at invalid actions."""
        return jax.nn.log_softmax(self._masked()[0], axis=-1)

    @property
    def probs(self) -> jax.Array:
        """[..., A] π(a), exactly 0 at invalid actions, summing to 1 over the valid ones."""
        masked_logits, valid = self._masked()
        return jnp.where(valid, jax.nn.softmax(masked_logits, axis=-1), 0.0)

    def sample(self, key: jax.Array) -> jax.Array:
        """One action per batch element: int32 [...], always a valid action (Gumbel-max)."""
        masked_logits, valid = self._masked()
        return jax.random.categorical(key, jnp.where(valid, masked_logits, -jnp.inf), axis=-1).astype(jnp.int32)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log π(a) of int actions [...] (the batch shape) → [...]; ≈ −1e9 for invalid actions."""
        chex.assert_shape(actions, self.logits.shape[:-1])
        log_probs = self.log_probs
        return jnp.take_along_axis(log_probs, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(actions [...], log π(actions) [...])."""
        actions = self.sample(key)
        return actions, self.log_prob(actions)

    def entropy(self) -> jax.Array:
        """H[π] = −Σ_{a valid} π(a) log π(a) [...]: invalid actions contribute exactly 0, so this is
        the entropy of the softmax renormalised over the valid actions.

        Written out rather than distrax's (same value): this form keeps a lifetime's logged loss
        bit-identical whether it is trained alone or in a vmapped batch (tests/lpg/test_evaluation).
        """
        log_probs = self.log_probs  # invalid entries ≈ −1e9, whose exp is exactly 0
        return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)

    def mode(self) -> jax.Array:
        """argmax_a π(a) over valid actions [...] (int32; ties → lowest index)."""
        masked_logits, valid = self._masked()
        return jnp.argmax(jnp.where(valid, masked_logits, -jnp.inf), axis=-1).astype(jnp.int32)

    def kl(self, other: MaskedCategorical) -> jax.Array:
        """KL(self ‖ other) = Σ_a π(a) (log π(a) − log π'(a)) [...], 0·log 0 = 0.

        If `other` masks an action `self` can take, the true KL is +inf; here that term is finite
        but huge (≈ 1e9 · π(a)), which keeps gradients defined.
        """
        if self.num_actions != other.num_actions:
            raise ValueError(f"KL between categoricals over {self.num_actions} and {other.num_actions} actions")
        return self._distrax().kl_divergence(other._distrax())


# ----------------------------------------------------------------------------------------------
# Continuous
# ----------------------------------------------------------------------------------------------


def _batch_and_event_shape(mean: jax.Array, log_std: jax.Array) -> tuple[tuple[int, ...], int]:
    shape = jnp.broadcast_shapes(jnp.shape(mean), jnp.shape(log_std))
    if len(shape) < 1:
        raise ValueError(f"mean/log_std need a trailing action dimension D, got shape {shape}")
    return tuple(shape[:-1]), shape[-1]


@flax.struct.dataclass
class Gaussian:
    """Diagonal Normal N(μ, diag σ²) on R^D, σ = exp(log_std).

        log π(a) = Σ_d [ −(a_d − μ_d)² / (2σ_d²) − log σ_d − ½ log 2π ],
        H[π]     = Σ_d [ ½ log(2πe) + log σ_d ].

    Samples a = μ + σ ⊙ ε, ε ~ N(0, I), are reparameterised (pathwise gradients to μ and σ).
    log_std is used as given; clipping it is the job of whoever builds it (`DistributionSpec`).

    Attributes:
      mean: [..., D] μ.
      log_std: broadcastable to [..., D] (e.g. [D] for a state-independent σ).
    """

    mean: jax.Array
    log_std: jax.Array

    def _distrax(self) -> distrax.Independent:
        return distrax.Independent(distrax.Normal(self.mean, jnp.exp(self.log_std)), reinterpreted_batch_ndims=1)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return _batch_and_event_shape(self.mean, self.log_std)[0]

    @property
    def action_dim(self) -> int:
        return _batch_and_event_shape(self.mean, self.log_std)[1]

    def sample(self, key: jax.Array) -> jax.Array:
        """a = μ + σ ⊙ ε: [..., D]."""
        return self._distrax().sample(seed=key)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log π(a) summed over D: actions [..., D] → [...]."""
        chex.assert_shape(actions, self.batch_shape + (self.action_dim,))
        return self._distrax().log_prob(actions)

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a [..., D], log π(a) [...])."""
        return self._distrax().sample_and_log_prob(seed=key)

    def entropy(self) -> jax.Array:
        """Σ_d ½ log(2πe) + log σ_d: [...]."""
        return self._distrax().entropy()

    def mode(self) -> jax.Array:
        """μ broadcast to [..., D]."""
        return jnp.broadcast_to(self.mean, self.batch_shape + (self.action_dim,))

    def kl(self, other: Gaussian) -> jax.Array:
        """KL(self ‖ other) = Σ_d [ log(σ'_d/σ_d) + (σ_d² + (μ_d − μ'_d)²) / (2σ'_d²) − ½ ]: [...]."""
        return self._distrax().kl_divergence(other._distrax())


@functools.lru_cache(maxsize=None)
def _probabilists_hermite(num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x_k and weights w_k (Σ w_k = 1) with E_{x~N(0,1)}[f(x)] ≈ Σ_k w_k f(x_k)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
    return nodes, weights / weights.sum()


def _log_one_minus_tanh_sq(u: jax.Array) -> jax.Array:
    """log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u)), elementwise; stable for any u (no
    1 − tanh² cancellation, which is 0 in float32 beyond |u| ≈ 9)."""
    return distrax.Tanh().forward_log_det_jacobian(u)


@flax.struct.dataclass
class TanhGaussian:
    """Diagonal Normal squashed into a Box: u ~ N(μ, diag σ²), a = c + h ⊙ tanh(u) ∈ [low, high],
    c = (high + low)/2, h = (high − low)/2 (the SAC policy, Haarnoja et al. 2018, appendix C).

    Change of variables (tanh is a bijection R → (−1, 1)):

        log π(a) = log N(u; μ, σ) − Σ_d [ log h_d + log(1 − tanh² u_d) ],   u = atanh((a − c)/h),
        log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u))   (stable form, no 1 − tanh² cancellation).

    `sample_and_log_prob` evaluates this at the drawn u directly, never inverting tanh.
    `log_prob(a)` of a given action (e.g. one stored in a rollout) has to invert it; it clips
    (a − c)/h to ±(1 − ε), ε = machine epsilon of the dtype (|u| ≤ 8.3 in float32), so actions on or
    numerically at the bounds — float32 tanh rounds to ±1 once |u| ≳ 9 — get a finite log-prob
    (that of the clipped point) instead of ±inf. Away from the bounds it is exact. With a wide σ a
    real share of the mass lies beyond |u| = 8.3 (26% for μ = 0, σ = e^2) and is collapsed onto
    the bounds by float32 itself, so prefer `sample_and_log_prob` for freshly drawn actions.

    Attributes:
      mean: [..., D] μ of the pre-squash Gaussian.
      log_std: broadcastable to [..., D], log σ of the pre-squash Gaussian (used as given).
      low, high: broadcastable to [..., D] (typically [D]), finite, low < high.
    """

    mean: jax.Array
    log_std: jax.Array
    low: jax.Array
    high: jax.Array

    @property
    def pre_squash(self) -> Gaussian:
        """The Gaussian over u."""
        return Gaussian(self.mean, self.log_std)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.pre_squash.batch_shape

    @property
    def action_dim(self) -> int:
        return self.pre_squash.action_dim

    def _center_and_half_range(self) -> tuple[jax.Array, jax.Array]:
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        return (high + low) / 2, (high - low) / 2

    def _squash(self, u: jax.Array) -> jax.Array:
        center, half = self._center_and_half_range()
        # The clip only removes a possible last-ulp overshoot of c + h·(±1); tanh'(u) ≈ 0 there.
        return jnp.clip(center + half * jnp.tanh(u), self.low, self.high)

    def _log_det(self, u: jax.Array) -> jax.Array:
        """Σ_d log |∂a_d/∂u_d| = Σ_d [log h_d + log(1 − tanh² u_d)]: [..., D] → [...]."""
        _, half = self._center_and_half_range()
        return jnp.sum(jnp.log(half) + _log_one_minus_tanh_sq(u), axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        """a = c + h ⊙ tanh(μ + σ ⊙ ε): [..., D] in [low, high], pathwise-differentiable."""
        return self._squash(self.pre_squash.sample(key))

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a [..., D], log π(a) [...]) with the log-det evaluated at the drawn u (no atanh)."""
        u, log_prob_u = self.pre_squash.sample_and_log_prob(key)
        return self._squash(u), log_prob_u - self._log_det(u)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log π(a) summed over D: actions [..., D] in [low, high] → [...] (finite at the bounds)."""
        chex.assert_shape(actions, self.batch_shape + (self.action_dim,))
        center, half = self._center_and_half_range()
        limit = 1.0 - jnp.finfo(jnp.result_type(actions, float)).eps
        u = jnp.arctanh(jnp.clip((actions - center) / half, -limit, limit))
        return self.pre_squash.log_prob(u) - self._log_det(u)

    def entropy(self, num_nodes: int = TANH_ENTROPY_NODES) -> jax.Array:
        """H[π] of the squashed distribution [...], by 1-D Gauss–Hermite quadrature per dimension.

        No closed form exists. Since a = c + h·tanh(u) is a bijection, exactly

            H[a] = H[u] + E[log |det ∂a/∂u|]
                 = Σ_d [ ½ log(2πe) + log σ_d + log h_d + E_{u_d ~ N(μ_d, σ_d²)} log(1 − tanh² u_d) ],

        and as the dimensions are independent each expectation is one-dimensional:
        E ≈ Σ_k w_k log(1 − tanh²(μ_d + σ_d x_k)) over `num_nodes` probabilists' Hermite nodes.

        Why this and not the alternatives: the pre-tanh entropy H[u] grows without bound with σ
        while the true entropy falls once mass piles up at the bounds, so as an entropy bonus it
        rewards saturated, bang-bang policies; a single-sample estimate −log π(a) needs a key and
        adds variance. The quadrature is deterministic, keyless (same signature as the other
        distributions), differentiable and costs `num_nodes` softplus per action dimension.
        (A single-sample estimate, if wanted, is `-sample_and_log_prob(key)[1]`.)

        Accuracy with 64 nodes (vs adaptive quadrature in float64, |μ| ≤ 6): error < 1e-4 nats
        per dimension for log σ ≤ 1, ≈ 0.02 at log σ = 2, the top of the default log-std range
        (on the scale of so wide a Gaussian the integrand ≈ 2 log 2 − 2|u| is nearly kinked at 0).

        Args:
          num_nodes: static number of quadrature nodes.
        Returns:
          [...] entropies in nats.
        """
        nodes, weights = _probabilists_hermite(num_nodes)
        mean = jnp.broadcast_to(self.mean, self.batch_shape + (self.action_dim,))
        log_std = jnp.broadcast_to(self.log_std, mean.shape)
        dtype = mean.dtype
        u = mean[..., None] + jnp.exp(log_std)[..., None] * jnp.asarray(nodes, dtype)  # [..., D, K]
        expected_log_det = _log_one_minus_tanh_sq(u) @ jnp.asarray(weights, dtype)  # [..., D]
        _, half = self._center_and_half_range()
        per_dim = 0.5 * jnp.log(2 * jnp.pi * jnp.e) + log_std + jnp.log(half) + expected_log_det
        return jnp.sum(per_dim, axis=-1)

    def mode(self) -> jax.Array:
        """c + h ⊙ tanh(μ): [..., D], the greedy action.

        This is the image of the pre-squash mode and, tanh being monotone, the exact per-dimension
        median of π; the density's own maximum can sit on a bound when σ is large, which is not
        a useful evaluation action.
        """
        return self._squash(jnp.broadcast_to(self.mean, self.batch_shape + (self.action_dim,)))

    def kl(self, other: TanhGaussian) -> jax.Array:
        """KL(self ‖ other) [...] = KL of the pre-squash Gaussians (KL is invariant under the
        shared bijection u ↦ a). Assumes both have the same bounds."""
        return self.pre_squash.kl(other.pre_squash)


# ----------------------------------------------------------------------------------------------
# From action spaces
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DistributionSpec:
    """How a policy head of `num_outputs` numbers becomes a distribution over one action space.

    Static and hashable (bounds are tuples of floats), so it can sit on a network or rule object.

    Attributes:
      kind: CATEGORICAL (head = A logits), GAUSSIAN or TANH_GAUSSIAN (head = 2·D numbers:
        [..., :D] the mean, [..., D:] a raw log-std clipped to [log_std_min, log_std_max]).
        TANH_GAUSSIAN soft-bounds the pre-squash mean, μ = B·tanh(m / B), B = TANH_MEAN_BOUND,
        so stored actions stay invertible in float32 (see the constant).
      action_size: A (number of discrete actions, masked ones included) or D (action dimension).
      low, high: per-dimension bounds of a Box: TANH_GAUSSIAN squashes into them (required);
        GAUSSIAN keeps them (optional, () if unknown) only to clip actions sent to the
        environment (`env_action`); () for CATEGORICAL.
      log_std_min, log_std_max: the log-std clipping range. A hard clip: the identity inside, so a
        zero-initialised head means σ = 1; the gradient is zero outside, which only matters if
        the loss drives σ to e^-5 or e^2.
    """

    kind: str
    action_size: int
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    log_std_min: float = LOG_STD_MIN
    log_std_max: float = LOG_STD_MAX

    def __post_init__(self):
        if self.kind not in (CATEGORICAL, GAUSSIAN, TANH_GAUSSIAN):
            raise ValueError(f"unknown distribution kind {self.kind!r}")
        if not isinstance(self.action_size, int) or self.action_size < 1:
            raise ValueError(f"action_size must be a positive int, got {self.action_size!r}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"need log_std_min < log_std_max, got {self.log_std_min}, {self.log_std_max}")
        if self.kind == TANH_GAUSSIAN or (self.kind == GAUSSIAN and (self.low or self.high)):
            low, high = np.asarray(self.low, float), np.asarray(self.high, float)
            if low.shape != (self.action_size,) or high.shape != (self.action_size,):
                raise ValueError(f"low/high must have {self.action_size} entries, got {self.low}, {self.high}")
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
                raise ValueError(f"a bounded continuous policy needs finite low < high, got {self.low}, {self.high}")
        elif self.low or self.high:
            raise ValueError(f"a {self.kind} policy has no bounds, got low={self.low}, high={self.high}")

    @classmethod
    def from_space(
        cls,
        space: Any,
        *,
        squash: bool = True,
        log_std_min: float = LOG_STD_MIN,
        log_std_max: float = LOG_STD_MAX,
    ) -> DistributionSpec:
        """The spec for a gymnax `Discrete(n)` or `Box(low, high, (D,))` action space.

        Args:
          space: `env_base.Discrete` or `env_base.Box` with a rank-1 shape and concrete bounds
            (build specs outside jit, e.g. from default env params).
          squash: Box only: TanhGaussian into [low, high] (needs finite bounds) if True, an
            unbounded Gaussian if False (it keeps finite bounds, if any, for `env_action`).
          log_std_min, log_std_max: Box only: clipping range of the log-std.
        """
        if isinstance(space, env_base.Discrete):
            return cls(kind=CATEGORICAL, action_size=int(space.n))
        if isinstance(space, env_base.Box):
            shape = tuple(space.shape)
            if len(shape) != 1:
                raise ValueError(f"only rank-1 Box action spaces are supported, got shape {shape}")
            try:
                low = np.broadcast_to(np.asarray(space.low, float), shape)
                high = np.broadcast_to(np.asarray(space.high, float), shape)
            except jax.errors.TracerArrayConversionError as e:
                raise ValueError("Box bounds must be concrete: build the DistributionSpec outside jit") from e
            bounds = dict(low=tuple(float(x) for x in low), high=tuple(float(x) for x in high))
            if not squash:
                finite = np.all(np.isfinite(low)) and np.all(np.isfinite(high))
                return cls(kind=GAUSSIAN, action_size=shape[0], log_std_min=log_std_min,
                           log_std_max=log_std_max, **(bounds if finite else {}))
            return cls(kind=TANH_GAUSSIAN, action_size=shape[0], log_std_min=log_std_min,
                       log_std_max=log_std_max, **bounds)
        raise TypeError(f"unsupported action space {type(space).__name__} (Discrete or Box only)")

    @property
    def num_outputs(self) -> int:
        """Width of the policy head: A logits, or 2·D (mean and raw log-std)."""
        return self.action_size if self.kind == CATEGORICAL else 2 * self.action_size

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one action: () for discrete, (D,) for continuous."""
        return () if self.kind == CATEGORICAL else (self.action_size,)

    @property
    def action_dtype(self):
        """int32 for discrete actions, float32 for continuous ones."""
        return jnp.int32 if self.kind == CATEGORICAL else jnp.float32

    def env_action(self, action: jax.Array) -> jax.Array:
        """The action to send to the environment for a sampled `action` [..., *action_shape]:
        a GAUSSIAN sample clipped into the Box bounds (if known); anything else unchanged.
        The rollout keeps the sampled action, whose log-probability the rules use."""
        if self.kind == GAUSSIAN and self.low:
            return jnp.clip(action, jnp.asarray(self.low, action.dtype), jnp.asarray(self.high, action.dtype))
        return action

    def make(self, head_outputs: jax.Array, mask: jax.Array | None = None) -> Distribution:
        """The distribution given the policy head's outputs.

        Args:
          head_outputs: [..., num_outputs], any leading dims.
          mask: CATEGORICAL only: bool broadcastable to [..., A], True for valid actions.
        Returns:
          MaskedCategorical, Gaussian or TanhGaussian with batch shape [...].
        """
        chex.assert_axis_dimension(head_outputs, -1, self.num_outputs)
        if self.kind == CATEGORICAL:
            return MaskedCategorical(head_outputs, mask)
        if mask is not None:
            raise ValueError("action masks only apply to discrete action spaces")
        mean, raw_log_std = jnp.split(head_outputs, 2, axis=-1)  # [..., D] each
        log_std = jnp.clip(raw_log_std, self.log_std_min, self.log_std_max)
        if self.kind == GAUSSIAN:
            return Gaussian(mean, log_std)
        mean = TANH_MEAN_BOUND * jnp.tanh(mean / TANH_MEAN_BOUND)
        dtype = head_outputs.dtype
        return TanhGaussian(mean, log_std, jnp.asarray(self.low, dtype), jnp.asarray(self.high, dtype))


def for_action_space(
    space: Any, head_outputs: jax.Array, mask: jax.Array | None = None, **spec_kwargs: Any
) -> Distribution:
    """`DistributionSpec.from_space(space, **spec_kwargs).make(head_outputs, mask)`."""
    return DistributionSpec.from_space(space, **spec_kwargs).make(head_outputs, mask)
