"""A replay buffer that lives inside a lifetime's state (off-policy agents: TD3, MetaGenRL).

The buffer is a pure pytree of arrays (flashbax's `TrajectoryBufferState`), so a population of
buffers is a `vmap`, a training loop threads it through `lax.scan`, and checkpoints save it with
the rest of the lifetime. The functions below are the whole interface; storage, the write pointer
and uniform sampling are flashbax 0.1.3's trajectory buffer (`flashbax.buffers.trajectory_buffer`),
called with explicit arguments rather than through its `make_*` factories, so one state serves
both samplers below.

Layout: the B environments of one agent each own a row of `capacity / B` time slots, written as a
ring: `add` writes one transition per environment at the shared write pointer and advances it.
Keeping each environment's transitions in time order in its own row is what makes contiguous
sequences meaningful (MetaGenRL feeds truncated episodes of 20 steps to its objective); a flat
[capacity] ring interleaving the B environments would not.

    state = replay.init(example_transition, capacity=N, num_envs=B)
    state = replay.add(state, transitions)                  # leaves [B, ...]
    batch = replay.sample(state, key, batch_size)           # leaves [batch_size, ...]
    seqs = replay.sample_sequences(state, key, batch_size, length)   # [batch_size, length, ...]

Sampling is uniform, with replacement, over what is stored: every (environment, time slot) that
holds data for `sample`; every start (environment, slot) whose `length` slots all hold data and do
not run across the write pointer (i.e. do not join the newest transition to the oldest) for
`sample_sequences`. Nothing here jits or vmaps; the caller composes them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flashbax.buffers import trajectory_buffer

ReplayState = trajectory_buffer.TrajectoryBufferState


def init(example_transition: Any, *, capacity: int, num_envs: int) -> ReplayState:
    """An empty buffer for `capacity` transitions added `num_envs` at a time.

    Args:
      example_transition: one unbatched transition (any pytree of arrays); fixes the leaves'
        shapes and dtypes. Its values are not stored.
      capacity: N, total transitions kept (static); a multiple of `num_envs`.
      num_envs: B, transitions per `add` call, one per environment (static).
    Returns:
      The buffer state; leaves [B, N / B, ...], write pointer 0, not full.
    """
    if num_envs < 1 or capacity < num_envs or capacity % num_envs:
        raise ValueError(f"replay capacity must be a positive multiple of num_envs={num_envs}, "
                         f"got {capacity}")
    return trajectory_buffer.init(
        example_transition, add_batch_size=num_envs, max_length_time_axis=capacity // num_envs)


def _time_slots(state: ReplayState) -> int:
    """N / B, the static length of each environment's row."""
    return jax.tree.leaves(state.experience)[0].shape[1]


def _num_envs(state: ReplayState) -> int:
    return jax.tree.leaves(state.experience)[0].shape[0]


def add(state: ReplayState, transitions: Any) -> ReplayState:
    """Writes one transition per environment at the write pointer (overwriting the oldest once
    the buffer is full) and advances the pointer.

    Args:
      state: the buffer.
      transitions: the example's pytree with a leading [B] axis (same dtypes).
    """
    # flashbax adds [B, T, ...] chunks along the time axis; one step is a chunk of T = 1.
    return trajectory_buffer.add(state, jax.tree.map(lambda x: x[:, None], transitions))


def filled_slots(state: ReplayState) -> jax.Array:
    """int32 []: how many time slots of each environment's row hold data (≤ N / B)."""
    return jnp.where(state.is_full, _time_slots(state), state.current_index).astype(jnp.int32)


def size(state: ReplayState) -> jax.Array:
    """int32 []: transitions stored, min(added, N)."""
    return filled_slots(state) * _num_envs(state)


def can_sample(state: ReplayState, length: int = 1) -> jax.Array:
    """bool []: whether sequences of `length` steps (1: single transitions) can be drawn.

    `sample`/`sample_sequences` on a buffer where this is False return meaningless (zero or
    stale) data rather than raising, as nothing can raise inside jit: check it, or fill the
    buffer first (TD3's random-action warm-up does).
    """
    return filled_slots(state) >= length


def sample_sequences(state: ReplayState, key: jax.Array, batch_size: int, length: int) -> Any:
    """`batch_size` sequences of `length` consecutive steps of one environment, uniformly.

    A sequence lies inside one environment's row, holds only stored steps, and never runs across
    the write pointer: its steps are consecutive in time. It may span an episode boundary (the
    stored `terminated`/`truncated` flags say where).

    Args:
      state: the buffer; needs `can_sample(state, length)`.
      key: PRNG key.
      batch_size, length: static.
    Returns:
      The transition pytree with leaves [batch_size, length, ...], oldest step first.
    """
    if not 1 <= length <= _time_slots(state):
        raise ValueError(f"sequence length must be in [1, {_time_slots(state)}], got {length}")
    # period = 1: every stored step can start a sequence.
    drawn = trajectory_buffer.sample(state, key, batch_size, sequence_length=length, period=1)
    return drawn.experience


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
    """`batch_size` transitions drawn uniformly, with replacement, from the stored ones.

    Args:
      state: the buffer; needs `can_sample(state)`.
      key: PRNG key.
      batch_size: static.
    Returns:
      The transition pytree with leaves [batch_size, ...].
    """
    sequences = sample_sequences(state, key, batch_size, length=1)
    return jax.tree.map(lambda x: x[:, 0], sequences)
