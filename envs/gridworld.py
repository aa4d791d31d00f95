"""Grid worlds of LPG (Oh et al. 2020, appendix A.1-A.2; SPEC §2): one implementation, two modes.

An H×W grid holds N objects, each written [r, ε_term, ε_respawn]. Collecting an object pays r,
then the episode terminates with probability ε_term; an absent object reappears with probability
ε_respawn per step. Episodes are also cut at `max_steps_in_episode` (truncation, not termination).

Observation modes (static, constructor argument):
  * "tabular": object positions are drawn once per lifetime (`sample_params`) and fixed within it;
    the observation is the integer state index
        obs = agent_cell * 2**N + Σ_i present_i * 2**i,   agent_cell = row * W + col,
    so `num_states = H * W * 2**N` (wall cells are counted but never visited).
  * "random": object and agent positions are redrawn at every episode start and a respawning object
    appears at a uniformly random free cell (not a wall, not the agent, not another present object).
    The observation is float32 {0,1}[H, W, C]: one channel per object *type* (objects with equal
    [r, ε_term, ε_respawn] in the constructor share a type), then one channel for the agent.

Actions: always `Discrete(18)` statically; a traced param picks the lifetime's action space:
  * 9-action mode (`collect_actions=False`): actions 0..8 move to a neighbour (or stay), and an
    object on the agent's cell after moving is collected automatically;
  * 18-action mode (`collect_actions=True`): actions 0..8 only move; action 9+d collects the object
    on the cell in direction d (d = 4 is the agent's own cell); the agent does not move.
  Direction d = 3 * (dr + 1) + (dc + 1) for row/column offsets dr, dc ∈ {-1, 0, 1}; d = 4 is "stay".
  Moving into a wall or off the grid leaves the agent in place. An action that does not exist in
  this lifetime (9..17 in 9-action mode, or outside 0..17) behaves exactly like "stay" (action 4).
`action_mask(params)` gives the valid actions, for the agent to mask its logits.

Order within one step: move / collect → termination draw for a collected object → respawn of the
objects that were absent at the *start* of the step (so a just-collected object cannot reappear in
the same step, and ε_respawn = 1 brings it back on the next step). In tabular mode a respawned
object may appear under the agent; in 9-action mode it is then collected by the next move that
ends on that cell (including "stay").

Sizes are H×W = rows×columns as written in the paper (e.g. 7×9 has 7 rows and 9 columns).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs import base

MODES = ("tabular", "random")
NUM_MOVES = 9
NUM_ACTIONS = 18
STAY = 4
# Row/column offset of each direction d = 3 * (dr + 1) + (dc + 1).
_ROW_OFFSET = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1], np.int32)
_COL_OFFSET = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1], np.int32)
_MAX_STATES = 2**31 - 1  # tabular indices are int32


@struct.dataclass
class GridParams:
    """Per-lifetime grid-world parameters (a pytree; vmap over it for a batch of lifetimes).

    rewards, term_probs, respawn_probs: float32[N], the [r, ε_term, ε_respawn] of each object.
    walls: bool[H * W], True on wall cells (flattened row-major).
    object_cells: int32[N], fixed object cells in tabular mode; -1 (unused) in random mode.
    start_cells: int32[H * W], the cells an episode may start on first (not a wall and, in tabular
      mode, no object), in increasing order; the tail is padding. In random mode these are all
      free cells and new positions are drawn from them.
    num_start_cells: int32[], how many entries of `start_cells` are valid.
    start_rank: int32[H * W], the position of each cell in `start_cells` (-1 if absent).
    collect_actions: bool[], True for the 18-action space, False for 9 moves with auto-collect.
    max_steps_in_episode: int32[], the time limit (truncation).

    start_cells, num_start_cells and start_rank are derived from walls and object_cells by
    `GridWorld.make_params`; rebuild params with it (not `.replace`) when changing either.
    """

    rewards: jax.Array
    term_probs: jax.Array
    respawn_probs: jax.Array
    walls: jax.Array
    object_cells: jax.Array
    start_cells: jax.Array
    num_start_cells: jax.Array
    start_rank: jax.Array
    collect_actions: jax.Array
    max_steps_in_episode: jax.Array


@struct.dataclass
class GridState:
    """agent: int32[] cell; object_cells: int32[N]; present: bool[N]; time: int32[] steps so far."""

    agent: jax.Array
    object_cells: jax.Array
    present: jax.Array
    time: jax.Array


def object_type_ids(objects: Sequence[Sequence[float]]) -> tuple[int, ...]:
    """Type index of each object: objects with identical [r, ε_term, ε_respawn] share a type.

    Types are numbered in order of first appearance, e.g. 2×[1,0,0.05], [-1,0.5,0.1] -> (0, 0, 1).
    """
    seen: dict[tuple[float, ...], int] = {}
    return tuple(seen.setdefault(tuple(float(v) for v in obj), len(seen)) for obj in objects)


def walls_mask(walls, height: int, width: int) -> np.ndarray:
    """Validates `walls` and returns it as a numpy bool[H, W] mask.

    walls: None (no interior walls), a bool array/nested list of shape [H, W], or a sequence of
      integer (row, col) pairs. The dtype decides: bool means a mask, integers mean coordinates.
    """
    if walls is None:
        return np.zeros((height, width), bool)
    array = np.asarray(walls)
    if array.size == 0:
        return np.zeros((height, width), bool)
    if array.dtype == bool:
        if array.shape != (height, width):
            raise ValueError(
                f"walls: a bool mask must have shape (height, width) = {(height, width)}, got {array.shape}"
            )
        return array.copy()
    if np.issubdtype(array.dtype, np.integer):
        if array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(
                f"walls: integer walls must be (row, col) pairs of shape (K, 2), got shape {array.shape}; "
                f"or pass a bool mask of shape {(height, width)}"
            )
        rows, cols = array[:, 0], array[:, 1]
        outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
        if outside.any():
            raise ValueError(
                f"walls: coordinates {array[outside].tolist()} lie outside the {height}x{width} grid"
            )
        mask = np.zeros((height, width), bool)
        mask[rows, cols] = True
        return mask
    raise ValueError(
        f"walls: expected None, a bool mask of shape {(height, width)} or integer (row, col) pairs, "
        f"got dtype {array.dtype}"
    )


def draw_rank(u: jax.Array, num_free: jax.Array, taken: jax.Array, taken_valid: jax.Array) -> jax.Array:
    """A uniform rank in [0, num_free) that is not taken, from one uniform draw.

    Ranks index a list of free cells, so sampling a cell costs O(len(taken)**2) scalar operations
    instead of a cumulative sum over the grid (which dominated the random-mode step).
    u: float32[] in [0, 1). num_free: int32[]. taken: int32[m] distinct ranks, of which those with
    taken_valid (bool[m]) are excluded; at least one rank must be left. Returns int32[].
    """
    num_left = num_free - jnp.sum(taken_valid, dtype=jnp.int32)
    k = jnp.minimum(jnp.floor(u * num_left).astype(jnp.int32), num_left - 1)
    # The k-th (0-based) rank not taken is the least fixed point x = k + #{taken <= x}; iterating
    # from x = k climbs monotonically to it, adding at least one taken rank per step until it stops.
    x = k
    for _ in range(taken.shape[0]):
        x = k + jnp.sum(taken_valid & (taken <= x), dtype=jnp.int32)
    return x


def sample_distinct_ranks(u: jax.Array, num_free: jax.Array) -> jax.Array:
    """n distinct uniform ranks in [0, num_free) (sampling without replacement).

    u: float32[n] in [0, 1); num_free >= n. Returns int32[n].
    """
    ranks = []
    for i in range(u.shape[0]):  # n is small and static (the number of objects + 1)
        taken = jnp.stack(ranks) if ranks else jnp.zeros((0,), jnp.int32)
        ranks.append(draw_rank(u[i], num_free, taken, jnp.ones((i,), bool)))
    return jnp.stack(ranks) if ranks else jnp.zeros((0,), jnp.int32)


def free_cell_list(free: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """free: bool[C]. Returns (cells int32[C]: the free cells first, increasing, then padding;
    count int32[]; rank int32[C]: position of each free cell in `cells`, -1 elsewhere)."""
    cells = jnp.argsort(~free, stable=True).astype(jnp.int32)  # stable: free cells keep their order
    rank = jnp.where(free, jnp.cumsum(free, dtype=jnp.int32) - 1, -1)
    return cells, jnp.sum(free, dtype=jnp.int32), rank


def _as_jax(params: GridParams) -> GridParams:
    """Params fetched to the host (numpy leaves) cannot be indexed by traced cells; convert."""
    return jax.tree.map(jnp.asarray, params)


def _check_objects(objects) -> np.ndarray:
    try:
        array = np.asarray(objects, dtype=np.float64)
    except (TypeError, ValueError):  # ragged or non-numeric
        array = np.zeros((0,))
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise ValueError(
            f"objects: expected a non-empty list of [r, eps_term, eps_respawn] triples, got {objects!r}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"objects: values must be finite, got {objects!r}")
    probs = array[:, 1:]
    if ((probs < 0) | (probs > 1)).any():
        bad = [tuple(o) for o in array[((probs < 0) | (probs > 1)).any(axis=1)].tolist()]
        raise ValueError(f"objects: eps_term and eps_respawn must lie in [0, 1], got {bad}")
    return array


class GridWorld(base.Environment):
    """LPG grid world (module docstring has the dynamics and observation formulas).

    Args (static; they fix shapes and the defaults of `default_params`):
      height, width: grid size H×W (rows × columns), positive.
      objects: N triples [r, ε_term, ε_respawn] (N and the object types are static; the values
        become the default `rewards` / `term_probs` / `respawn_probs` params).
      max_steps: default episode time limit, positive.
      mode: "tabular" or "random".
      walls: None, bool[H, W] mask, or (row, col) pairs; the default `walls` param.
    """

    def __init__(
        self,
        height: int,
        width: int,
        objects: Sequence[Sequence[float]],
        max_steps: int,
        mode: str = "tabular",
        walls=None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; allowed: {MODES}")
        for label, value in (("height", height), ("width", width), ("max_steps", max_steps)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        objects_array = _check_objects(objects)
        wall_mask = walls_mask(walls, height, width)
        num_objects = objects_array.shape[0]
        num_free = int((~wall_mask).sum())
        if num_objects + 1 > num_free:
            raise ValueError(
                f"objects: {num_objects} objects need {num_objects + 1} free cells (one more for the "
                f"agent) but the {height}x{width} grid has {num_free} free cells"
            )
        if mode == "tabular" and height * width * 2**num_objects > _MAX_STATES:
            raise ValueError(
                f"objects: {num_objects} objects on a {height}x{width} grid give "
                f"{height * width * 2**num_objects} tabular states, more than int32 allows"
            )
        self.height = int(height)
        self.width = int(width)
        self.mode = mode
        self.num_objects = num_objects
        self.max_steps = int(max_steps)
        self.type_ids = object_type_ids(objects_array.tolist())
        self.num_types = max(self.type_ids) + 1
        self._objects = objects_array.astype(np.float32)
        self._walls = wall_mask.reshape(-1)
        # A fixed default layout so `reset(key)` works without sampled params; lifetimes should
        # draw theirs with `sample_params`.
        free_cells = np.flatnonzero(~self._walls)
        self._default_cells = np.sort(
            np.random.default_rng(0).choice(free_cells, num_objects, replace=False)
        ).astype(np.int32)

    # ----------------------------------------------------------------------------------- params

    @property
    def num_cells(self) -> int:
        return self.height * self.width

    @property
    def num_states(self) -> int:
        """Number of tabular state indices, H * W * 2**N (tabular mode only)."""
        if self.mode != "tabular":
            raise AttributeError("num_states exists only for mode='tabular' grid worlds")
        return self.num_cells * 2**self.num_objects

    @property
    def num_channels(self) -> int:
        """Observation channels in random mode: one per object type plus the agent."""
        return self.num_types + 1

    def make_params(
        self,
        *,
        object_cells=None,
        walls=None,
        rewards=None,
        term_probs=None,
        respawn_probs=None,
        collect_actions=False,
        max_steps=None,
    ) -> GridParams:
        """Builds GridParams, filling in constructor defaults and the derived start cells.

        Jittable (object_cells may be traced). object_cells: int32[N] flat cells (row * W + col) for
        tabular mode, ignored (stored as -1) in random mode. walls: bool[H, W] or bool[H * W]. The
        caller keeps objects off walls and distinct; `sample_params` always does.
        """
        if isinstance(max_steps, int) and max_steps <= 0:
            raise ValueError(f"max_steps={max_steps} must be positive")
        n = self.num_objects
        walls = jnp.asarray(self._walls if walls is None else walls, bool).reshape(self.num_cells)
        if self.mode == "random":
            object_cells = -jnp.ones((n,), jnp.int32)
        elif object_cells is None:
            object_cells = self._default_cells
        object_cells = jnp.asarray(object_cells, jnp.int32).reshape(n)
        occupied = jnp.any(jnp.arange(self.num_cells)[:, None] == object_cells[None, :], axis=1)
        start_cells, num_start_cells, start_rank = free_cell_list(~walls & ~occupied)
        return GridParams(
            rewards=jnp.asarray(self._objects[:, 0] if rewards is None else rewards, jnp.float32).reshape(n),
            term_probs=jnp.asarray(self._objects[:, 1] if term_probs is None else term_probs, jnp.float32).reshape(n),
            respawn_probs=jnp.asarray(
                self._objects[:, 2] if respawn_probs is None else respawn_probs, jnp.float32
            ).reshape(n),
            walls=walls,
            object_cells=object_cells,
            start_cells=start_cells,
            num_start_cells=num_start_cells,
            start_rank=start_rank,
            collect_actions=jnp.asarray(collect_actions, bool),
            max_steps_in_episode=jnp.asarray(self.max_steps if max_steps is None else max_steps, jnp.int32),
        )

    @property
    def default_params(self) -> GridParams:
        return self.make_params()

    def sample_params(
        self, key: jax.Array, params: GridParams | None = None, collect_action_prob: float = 0.5
    ) -> GridParams:
        """Params of one lifetime: the action space (18 actions with `collect_action_prob`) and, in
        tabular mode, N distinct object cells drawn uniformly from the free cells of `params`."""
        params = self.default_params if params is None else params
        key_cells, key_actions = jax.random.split(key)
        collect_actions = jax.random.bernoulli(key_actions, collect_action_prob)
        object_cells = None
        if self.mode == "tabular":
            free_cells, num_free, _ = free_cell_list(~params.walls)
            ranks = sample_distinct_ranks(jax.random.uniform(key_cells, (self.num_objects,)), num_free)
            object_cells = free_cells[ranks]
        return self.make_params(
            object_cells=object_cells,
            walls=params.walls,
            rewards=params.rewards,
            term_probs=params.term_probs,
            respawn_probs=params.respawn_probs,
            collect_actions=collect_actions,
            max_steps=params.max_steps_in_episode,
        )

    # ------------------------------------------------------------------------------- dynamics

    def reset_env(self, key: jax.Array, params: GridParams) -> tuple[jax.Array, GridState]:
        """All objects present; tabular: agent on a uniform start cell (one draw and a gather, as
        gymnax evaluates reset at every step); random: objects and agent on distinct free cells."""
        params = _as_jax(params)
        if self.mode == "tabular":
            u = jax.random.uniform(key)
            k = jnp.minimum(jnp.floor(u * params.num_start_cells).astype(jnp.int32), params.num_start_cells - 1)
            agent = params.start_cells[k]
            object_cells = params.object_cells
        else:
            u = jax.random.uniform(key, (self.num_objects + 1,))
            cells = params.start_cells[sample_distinct_ranks(u, params.num_start_cells)]
            object_cells, agent = cells[:-1], cells[-1]
        state = GridState(
            agent=agent,
            object_cells=object_cells,
            present=jnp.ones((self.num_objects,), bool),
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state, params), state

    def step_env(
        self, key: jax.Array, state: GridState, action: jax.Array, params: GridParams
    ) -> tuple[jax.Array, GridState, jax.Array, jax.Array, dict]:
        params = _as_jax(params)
        n = self.num_objects
        # One batch of uniforms per step: [termination, respawn × N, respawn cell × N (random)].
        u = jax.random.uniform(key, (1 + n + (n if self.mode == "random" else 0),))
        action = jnp.asarray(action, jnp.int32)
        num_valid = jnp.where(params.collect_actions, NUM_ACTIONS, NUM_MOVES)
        action = jnp.where((action >= 0) & (action < num_valid), action, STAY)
        is_collect = action >= NUM_MOVES
        direction = action - NUM_MOVES * is_collect

        row, col = state.agent // self.width, state.agent % self.width
        target_row = row + jnp.asarray(_ROW_OFFSET)[direction]
        target_col = col + jnp.asarray(_COL_OFFSET)[direction]
        in_grid = (target_row >= 0) & (target_row < self.height) & (target_col >= 0) & (target_col < self.width)
        target = jnp.where(in_grid, target_row * self.width + target_col, -1)
        can_enter = in_grid & ~params.walls[jnp.maximum(target, 0)]
        agent = jnp.where(~is_collect & can_enter, target, state.agent)

        # The cell whose object gets collected: the target of a collect action, the agent's new
        # cell in 9-action mode, none (-1 matches no object) for a move in 18-action mode.
        collect_cell = jnp.where(is_collect, target, jnp.where(params.collect_actions, -1, agent))
        hit = state.present & (state.object_cells == collect_cell)  # at most one: cells are distinct
        reward = jnp.sum(jnp.where(hit, params.rewards, 0.0))
        terminated = u[0] < jnp.sum(jnp.where(hit, params.term_probs, 0.0))  # u ∈ [0,1): p=0 never, p=1 always

        respawn = ~state.present & (u[1 : 1 + n] < params.respawn_probs)
        remaining = state.present & ~hit
        object_cells = state.object_cells
        if self.mode == "random":
            object_cells = self._place_respawns(u[1 + n :], respawn, remaining, object_cells, agent, params)
        new_state = GridState(
            agent=agent, object_cells=object_cells, present=remaining | respawn, time=state.time + 1
        )
        return self.get_obs(new_state, params), new_state, reward, terminated, {}

    def _place_respawns(self, u, respawn, remaining, object_cells, agent, params):
        """Random mode: each respawning object takes a uniform free cell that is not the agent's, a
        remaining object's or that of an object respawned before it in this step.

        u: float32[N]; respawn, remaining: bool[N]; object_cells: int32[N]. Returns int32[N].
        """
        # Work with ranks in the free-cell list; entry 0 is the agent, entry 1 + i is object i.
        taken = params.start_rank[jnp.concatenate([agent[None], object_cells])]
        taken_valid = jnp.concatenate([jnp.ones((1,), bool), remaining])
        for i in range(self.num_objects):  # static and small
            rank = draw_rank(u[i], params.num_start_cells, taken, taken_valid)
            taken = taken.at[1 + i].set(jnp.where(respawn[i], rank, taken[1 + i]))
            taken_valid = taken_valid.at[1 + i].set(taken_valid[1 + i] | respawn[i])
        return jnp.where(respawn, params.start_cells[taken[1:]], object_cells)

    def get_obs(self, state: GridState, params: GridParams | None = None, key=None) -> jax.Array:
        """Tabular: int32[] state index (module docstring); random: float32[H, W, C] planes."""
        del params, key
        if self.mode == "tabular":
            bits = jnp.sum(state.present.astype(jnp.int32) << jnp.arange(self.num_objects, dtype=jnp.int32))
            return (state.agent * 2**self.num_objects + bits).astype(jnp.int32)
        cell_ids = jnp.arange(self.num_cells, dtype=jnp.int32)
        on_cell = (cell_ids[:, None] == state.object_cells[None, :]) & state.present[None, :]  # [HW, N]
        planes = [
            jnp.any(on_cell[:, [i for i, t in enumerate(self.type_ids) if t == type_id]], axis=1)
            for type_id in range(self.num_types)
        ]
        planes.append(cell_ids == state.agent)
        return jnp.stack(planes, axis=-1).astype(jnp.float32).reshape(self.height, self.width, self.num_channels)

    # ------------------------------------------------------------------------------ interface

    @property
    def name(self) -> str:
        return f"GridWorld-{self.mode}-{self.height}x{self.width}"

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: GridParams | None = None) -> base.Discrete:
        return base.Discrete(NUM_ACTIONS)

    def action_mask(self, params: GridParams) -> jax.Array:
        """bool[18]: all actions in 18-action mode, only the 9 moves otherwise."""
        return jnp.arange(NUM_ACTIONS) < jnp.where(params.collect_actions, NUM_ACTIONS, NUM_MOVES)

    def observation_space(self, params: GridParams | None = None):
        if self.mode == "tabular":
            return base.Discrete(self.num_states)
        return base.Box(0.0, 1.0, (self.height, self.width, self.num_channels), jnp.float32)
