"""The hyperparameter-balancing bandit p(α|E) of LPG (Oh et al. 2020, appendix B.1, Eq. 6).

One bandit per training task E, over a grid of arms α = (α_lr, α_y):

    p(α|E) ∝ exp((R(α,E) + ρ / √N(α,E)) / τ),

R = final lifetime return averaged over the last `window` (10) lifetimes that used α on E, and
N = number of lifetimes simulated with α on E. τ = 0.1, ρ = 0.2 in the paper. An arm that was
never tried has an unbounded bonus, so untried arms are sampled (uniformly) before any other.
Used only in meta-training. Pure functions over an explicit `BanditState`.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class BanditState:
    """recent_returns: [A, W] ring buffer of final returns per arm (slot = count % W).
    counts: [A] int32, N(α, E): lifetimes finished with each arm."""

    recent_returns: jax.Array
    counts: jax.Array


def init_bandit(num_arms: int, window: int = 10) -> BanditState:
    if num_arms <= 0 or window <= 0:
        raise ValueError(f"bandit needs num_arms > 0 and window > 0, got {num_arms}, {window}")
    return BanditState(
        recent_returns=jnp.zeros((num_arms, window), jnp.float32),
        counts=jnp.zeros((num_arms,), jnp.int32),
    )


def mean_recent_return(state: BanditState) -> jax.Array:
    """R(α, E): [A] mean of the last min(N, W) final returns per arm (0 for untried arms)."""
    window = state.recent_returns.shape[1]
    filled = jnp.minimum(state.counts, window)  # [A]
    valid = jnp.arange(window)[None, :] < filled[:, None]  # ring slots written so far
    total = jnp.sum(jnp.where(valid, state.recent_returns, 0.0), axis=1)
    return total / jnp.maximum(filled, 1)


def probabilities(state: BanditState, temperature: float, bonus: float) -> jax.Array:
    """p(α|E) of Eq. 6, [A]. Untried arms (N = 0) share all the mass while any exist."""
    counts = state.counts.astype(jnp.float32)
    score = (mean_recent_return(state) + bonus / jnp.sqrt(jnp.maximum(counts, 1.0))) / temperature
    untried = state.counts == 0
    logits = jnp.where(jnp.any(untried), jnp.where(untried, 0.0, -jnp.inf), score)
    return jax.nn.softmax(logits)


def sample_arm(key: jax.Array, state: BanditState, temperature: float, bonus: float) -> jax.Array:
    """Draws an arm index (int32 scalar) from p(α|E)."""
    probs = probabilities(state, temperature, bonus)
    return jax.random.choice(key, probs.shape[0], p=probs).astype(jnp.int32)


def record(state: BanditState, arm: jax.Array, final_return: jax.Array, valid=True) -> BanditState:
    """Adds one finished lifetime's final return to `arm` (a no-op where `valid` is False)."""
    window = state.recent_returns.shape[1]
    slot = state.counts[arm] % window
    new_returns = state.recent_returns.at[arm, slot].set(final_return)
    new_counts = state.counts.at[arm].add(1)
    return BanditState(
        recent_returns=jnp.where(valid, new_returns, state.recent_returns),
        counts=jnp.where(valid, new_counts, state.counts),
    )


def record_many(state: BanditState, arms: jax.Array, final_returns: jax.Array, valid: jax.Array):
    """Records a batch of lifetimes ([L] each) in index order (deterministic ring-buffer order)."""

    def body(bandit, xs):
        arm, ret, ok = xs
        return record(bandit, arm, ret, ok), None

    state, _ = jax.lax.scan(body, state, (arms, final_returns, valid))
    return state
