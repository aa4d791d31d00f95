"""The environment interface shared by every domain in `envs/`.

Environments follow gymnax 1.0 exactly (they subclass `gymnax...Environment`), so gymnax's own
environments (MinAtar, classic control) run through the same agent code unchanged:

    reset(key, params) -> (obs, state)
    step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)

`step` auto-resets: when `terminated | truncated`, the returned `obs`/`state` already belong to
the next episode and `info["final_observation"]` holds the last observation of the finished one.
Terminated (a true terminal state, no bootstrapping) and truncated (time limit) are kept apart.

Environments are unbatched; callers `vmap` over envs and over `EnvParams` (one task sample per
lifetime). Shape-fixing values (grid size, number of objects, maximum chain length) are
constructor arguments; everything else lives in the `EnvParams` pytree.

Two additions to the gymnax interface, both optional:
    * `action_mask(params) -> bool[A]`: which of the `action_space(params).n` actions exist in this
      lifetime (grid worlds sample 9 or 18 actions per lifetime but keep one static action count).
    * `num_states` (int property): only for tabular observations (a scalar int32 state index in
    [0, num_states)); fixed by constructor values, so agents can size their tables statically.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from gymnax.environments import environment
from gymnax.environments import spaces

Environment = environment.Environment
EnvState = environment.EnvState
EnvParams = environment.EnvParams
Discrete = spaces.Discrete
Box = spaces.Box


def action_mask(env: Environment, params) -> jax.Array | None:
    """Returns the bool[A] mask of valid actions of `env` under `params` (all True by default);
    None for continuous (Box) action spaces, which have no mask."""
    if hasattr(env, "action_mask"):
        return env.action_mask(params)
    space = env.action_space(params)
    if not isinstance(space, Discrete):
        return None
    return jnp.ones((space.n,), dtype=bool)
