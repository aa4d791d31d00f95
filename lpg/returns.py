"""λ-returns with correct episode ends, shared by rules (A2C) and meta-objectives (LPG's critic).

Per transition t of one rollout (time convention in `lpg.types`), with V(s'_{t+1}) the value of
the *true* successor state (`Rollout.next_observations`):

    G_t^λ = r_t + γ (1 − term_t) [ (1 − λ_t) V(s'_{t+1}) + λ_t G_{t+1}^λ ],   λ_t = λ (1 − trunc_t),

and G_{T−1}^λ bootstraps from V(s'_T). So:
  * after a termination nothing is bootstrapped (the terminal state has value 0);
  * after a time-limit truncation the return bootstraps from the value of the cut episode's last
    observation, and nothing flows back from the next episode (λ_t = 0 there);
  * inside an episode it is the usual recursive λ-return (Sutton & Barto Eq. 12.18).
rlax does the recursion; it accepts a per-step λ.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import rlax


def lambda_returns(
    rewards: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    next_values: jax.Array,
    discount: jax.Array,
    td_lambda: jax.Array,
) -> jax.Array:
    """G_t^λ of the module docstring for B trajectories.

    Args:
      rewards: [T, B] r_t.
      terminated: [T, B] bool, transition t reached a terminal state.
      truncated: [T, B] bool, the episode was cut by its time limit after transition t.
      next_values: [T, B] V(s'_{t+1}) on the true successor states (`Rollout.next_observations`).
      discount: scalar γ.
      td_lambda: scalar λ.
    Returns:
      [T, B] λ-returns (gradients flow into next_values; callers stop them where needed).
    """
    chex.assert_rank([rewards, terminated, truncated, next_values], 2)
    chex.assert_equal_shape([rewards, terminated, truncated, next_values])
    discounts = discount * (1.0 - terminated.astype(jnp.float32))  # [T, B]
    lambdas = td_lambda * (1.0 - truncated.astype(jnp.float32))  # [T, B]
    returns_fn = jax.vmap(
        lambda r, d, v, lam: rlax.lambda_returns(r, d, v, lam, stop_target_gradients=False),
        in_axes=1, out_axes=1)
    return returns_fn(rewards, discounts, next_values, lambdas)
