"""Delayed chain MDPs of LPG (Oh et al. 2020, appendix A.3; SPEC §2), after bsuite's Umbrella.

Two actions per step. At each episode start the environment draws which action c ∈ {0, 1} is the
rewarded one. The first action a_0 picks a branch; every later action has no effect. After L
transitions the episode terminates, and that last transition pays +1 if a_0 = c and −1 otherwise.
The chain length L is a per-lifetime param drawn by `sample_params` from U[min_length, max_length].
With `noisy`, every transition into a middle state (all but the last) also pays ±1 with equal
probability, independently of the actions (zero mean).

The position along the chain equals `state.time` (one transition per step), so the state is just
(c, a_0 or −1 before the first action, time).

Observations (static choice, `distractor`):
  * tabular: int32 state index, distinct for every (c, branch, position), so nothing is aliased:
        obs = c * (2 * max_length + 1) + (0 at the start state, else 1 + 2 * (t − 1) + a_0),
    for t = 1 .. L transitions taken (t = L is the terminal state, seen only in
    `info["final_observation"]`); `num_states = 2 * (2 * max_length + 1)`.
  * distractor: float32 {0,1}[22]: [c == 0, a_0 == c (0 before the first action), 20 noise bits
    drawn afresh for every observation].

Episodes end by termination after exactly L steps; the default `max_steps_in_episode` is
max_length + 1 so the time limit never fires unless a user lowers it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs import base

NUM_ACTIONS = 2
NUM_NOISE_BITS = 20
DISTRACTOR_SIZE = 2 + NUM_NOISE_BITS


@struct.dataclass
class ChainParams:
    """length: int32[] chain length L (2 <= L <= max_length); noisy: bool[] ±1 middle rewards;
    max_steps_in_episode: int32[] time limit (truncation)."""

    length: jax.Array
    noisy: jax.Array
    max_steps_in_episode: jax.Array


@struct.dataclass
class ChainState:
    """rewarded_action: int32[] c; first_action: int32[] a_0, −1 before it; time: int32[] t."""

    rewarded_action: jax.Array
    first_action: jax.Array
    time: jax.Array


class DelayedChain(base.Environment):
    """Delayed chain MDP (module docstring has the dynamics and the state-index formula).

    Args:
      min_length, max_length: range of the per-lifetime chain length L (2 <= min <= max);
        max_length is static (it sizes the tabular state space).
      noisy: default of the `noisy` param.
      distractor: static; float32[22] observations instead of the tabular state index.
    """

    def __init__(self, min_length: int = 5, max_length: int = 30, noisy: bool = False, distractor: bool = False):
        super().__init__()
        for label, value in (("min_length", min_length), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{label} must be an int, got {value!r}")
        if min_length < 2:
            raise ValueError(f"min_length={min_length}; chains need at least 2 steps (min_length >= 2)")
        if min_length > max_length:
            raise ValueError(f"min_length={min_length} > max_length={max_length}; need min_length <= max_length")
        self.min_length = min_length
        self.max_length = max_length
        self.noisy = bool(noisy)
        self.distractor = bool(distractor)

    @property
    def num_states(self) -> int:
        """Number of tabular state indices, 2 * (2 * max_length + 1) (tabular observations only)."""
        if self.distractor:
            raise AttributeError("num_states exists only for tabular (non-distractor) chains")
        return 2 * self._states_per_chain

    @property
    def _states_per_chain(self) -> int:
        return 2 * self.max_length + 1

    def make_params(self, *, length=None, noisy=None, max_steps=None) -> ChainParams:
        """ChainParams with constructor defaults (length defaults to max_length). Jittable; plain
        Python ints are checked (a length beyond max_length would alias the two chains' indices)."""
        if isinstance(length, int) and not 2 <= length <= self.max_length:
            raise ValueError(f"length={length}; allowed: 2 <= length <= max_length={self.max_length}")
        if isinstance(max_steps, int) and max_steps <= 0:
            raise ValueError(f"max_steps={max_steps} must be positive")
        return ChainParams(
            length=jnp.asarray(self.max_length if length is None else length, jnp.int32),
            noisy=jnp.asarray(self.noisy if noisy is None else noisy, bool),
            max_steps_in_episode=jnp.asarray(self.max_length + 1 if max_steps is None else max_steps, jnp.int32),
        )

    @property
    def default_params(self) -> ChainParams:
        return self.make_params()

    def sample_params(self, key: jax.Array, params: ChainParams | None = None) -> ChainParams:
        """Params of one lifetime: L ~ U[min_length, max_length] (inclusive)."""
        params = self.default_params if params is None else params
        length = jax.random.randint(key, (), self.min_length, self.max_length + 1, dtype=jnp.int32)
        return params.replace(length=length)

    # ------------------------------------------------------------------------------- dynamics

    def reset_env(self, key: jax.Array, params: ChainParams) -> tuple[jax.Array, ChainState]:
        # One 32-bit draw: bit 20 picks c, bits 0..19 are the distractor's noise.
        bits = jax.random.bits(key, (), jnp.uint32)
        state = ChainState(
            rewarded_action=((bits >> NUM_NOISE_BITS) & 1).astype(jnp.int32),
            first_action=-jnp.ones((), jnp.int32),
            time=jnp.zeros((), jnp.int32),
        )
        return self._observe(state, bits), state

    def step_env(
        self, key: jax.Array, state: ChainState, action: jax.Array, params: ChainParams
    ) -> tuple[jax.Array, ChainState, jax.Array, jax.Array, dict]:
        # One 32-bit draw: bit 20 is the noise reward's sign, bits 0..19 the distractor's noise.
        bits = jax.random.bits(key, (), jnp.uint32)
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, NUM_ACTIONS - 1)  # out-of-range -> nearest
        first_action = jnp.where(state.first_action < 0, action, state.first_action)
        time = state.time + 1
        terminated = time >= params.length
        final_reward = jnp.where(first_action == state.rewarded_action, 1.0, -1.0)
        noise_reward = jnp.where(((bits >> NUM_NOISE_BITS) & 1) == 1, 1.0, -1.0)
        reward = jnp.where(terminated, final_reward, jnp.where(params.noisy, noise_reward, 0.0))
        new_state = ChainState(rewarded_action=state.rewarded_action, first_action=first_action, time=time)
        return self._observe(new_state, bits), new_state, reward.astype(jnp.float32), terminated, {}

    def _observe(self, state: ChainState, bits: jax.Array) -> jax.Array:
        """Tabular int32[] index or distractor float32[22]; `bits` (uint32[]) feeds the noise bits."""
        c = state.rewarded_action
        if not self.distractor:
            along = jnp.where(state.first_action < 0, 0, 1 + 2 * (state.time - 1) + state.first_action)
            return (c * self._states_per_chain + along).astype(jnp.int32)
        relevant = jnp.stack([c == 0, state.first_action == c])  # a_0 == c is False before a_0 (−1)
        noise = ((bits >> jnp.arange(NUM_NOISE_BITS, dtype=jnp.uint32)) & 1).astype(bool)
        return jnp.concatenate([relevant, noise]).astype(jnp.float32)

    def get_obs(self, state: ChainState, params: ChainParams | None = None, key: jax.Array | None = None):
        """Observation of `state`; the distractor's noise bits come from `key` (required then)."""
        del params
        if self.distractor and key is None:
            raise ValueError("the distractor chain's observation is random: pass a key")
        bits = jnp.zeros((), jnp.uint32) if key is None else jax.random.bits(key, (), jnp.uint32)
        return self._observe(state, bits)

    # ------------------------------------------------------------------------------ interface

    @property
    def name(self) -> str:
        return "DelayedChain-distractor" if self.distractor else "DelayedChain"

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: ChainParams | None = None) -> base.Discrete:
        return base.Discrete(NUM_ACTIONS)

    def action_mask(self, params: ChainParams) -> jax.Array:
        return jnp.ones((NUM_ACTIONS,), bool)

    def observation_space(self, params: ChainParams | None = None):
        if self.distractor:
            return base.Box(0.0, 1.0, (DISTRACTOR_SIZE,), jnp.float32)
        return base.Discrete(self.num_states)
