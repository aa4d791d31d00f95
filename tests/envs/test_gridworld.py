"""Hand-checked dynamics of the LPG grid worlds (envs/gridworld.py; SPEC §2, LPG appendix A.1-A.2).

Tiny grids built by hand. Cells are row * W + col; directions d = 3 * (dr + 1) + (dc + 1).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.gridworld import GridState, GridWorld

UP_LEFT, UP, UP_RIGHT, LEFT, STAY, RIGHT, DOWN_LEFT, DOWN, DOWN_RIGHT = range(9)
COLLECT = 9  # COLLECT + d collects in direction d (18-action mode)

# 3x4 tabular grid: object 0 = [1, 0, 0] (never terminates, never respawns),
# object 1 = [-2, 1, 1] (always terminates, respawns at once).
TABULAR = GridWorld(3, 4, objects=[(1.0, 0.0, 0.0), (-2.0, 1.0, 1.0)], max_steps=100, mode="tabular")
# 4x4 random grid with two corner walls; objects 0 and 1 share a type, object 2 is its own type.
RANDOM = GridWorld(
    4, 4, objects=[(1.0, 0.0, 1.0), (1.0, 0.0, 1.0), (-1.0, 0.0, 0.0)], max_steps=100, mode="random",
    walls=[(0, 0), (3, 3)],
)
RANDOM_WALLS = {0, 15}


def state(agent, object_cells, present, time=0):
    return GridState(
        agent=jnp.int32(agent),
        object_cells=jnp.asarray(object_cells, jnp.int32),
        present=jnp.asarray(present, bool),
        time=jnp.int32(time),
    )


def step(env, s, action, params, seed=0):
    return env.step(jax.random.key(seed), s, jnp.int32(action), params)


def step_many(env, s, action, params, num_keys, seed=0):
    """The same transition under `num_keys` different keys (for the probabilistic parts)."""
    keys = jax.random.split(jax.random.key(seed), num_keys)
    return jax.vmap(env.step, in_axes=(0, None, None, None))(keys, s, jnp.int32(action), params)


# ------------------------------------------------------------------------------ observations


def test_tabular_state_index_formula():
    params = TABULAR.make_params(object_cells=[6, 0])
    assert TABULAR.num_states == 3 * 4 * 2**2
    assert TABULAR.observation_space(params).n == 48
    for present, bits in (([False, False], 0), ([True, False], 1), ([False, True], 2), ([True, True], 3)):
        assert int(TABULAR.get_obs(state(7, [6, 0], present), params)) == 7 * 4 + bits


def test_random_observation_channels():
    params = RANDOM.make_params()
    assert RANDOM.type_ids == (0, 0, 1) and RANDOM.num_channels == 3
    obs = np.asarray(RANDOM.get_obs(state(5, [1, 2, 10], [True, False, True]), params))
    assert obs.shape == (4, 4, 3) and obs.dtype == np.float32
    expected = np.zeros((16, 3), np.float32)
    expected[1, 0] = 1.0  # object 0 (type 0); object 1 (type 0) is absent, so cell 2 stays empty
    expected[10, 1] = 1.0  # object 2 (type 1)
    expected[5, 2] = 1.0  # the agent
    np.testing.assert_array_equal(obs, expected.reshape(4, 4, 3))


# ---------------------------------------------------------------------------------- movement


@pytest.mark.parametrize(
    "agent, action, expected",
    [
        (0, UP_LEFT, 0),  # corner: off the grid
        (0, UP, 0),
        (0, LEFT, 0),
        (0, RIGHT, 0),  # wall at (0, 1)
        (0, DOWN, 4),
        (0, DOWN_RIGHT, 5),
        (5, RIGHT, 5),  # wall at (1, 2)
        (5, UP_RIGHT, 2),
        (5, DOWN_LEFT, 8),
        (5, STAY, 5),
        (7, RIGHT, 7),  # right edge: must not wrap to (2, 0) = cell 8
        (8, LEFT, 8),  # left edge: must not wrap to (1, 3) = cell 7
        (11, DOWN_RIGHT, 11),
        (11, UP, 7),
    ],
)
def test_walls_and_edges_block_movement(agent, action, expected):
    env = GridWorld(3, 4, objects=[(1.0, 0.0, 0.0)], max_steps=100, walls=[(0, 1), (1, 2)])
    params = env.make_params(object_cells=[3], collect_actions=True)
    _, s, reward, terminated, _, _ = step(env, state(agent, [3], [True]), action, params)
    assert int(s.agent) == expected
    assert float(reward) == 0.0 and not bool(terminated)


def test_wall_mask_and_pairs_agree():
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = mask[1, 2] = True
    by_mask = GridWorld(3, 4, [(1.0, 0.0, 0.0)], 10, walls=mask).default_params.walls
    by_pairs = GridWorld(3, 4, [(1.0, 0.0, 0.0)], 10, walls=[(0, 1), (1, 2)]).default_params.walls
    np.testing.assert_array_equal(by_mask, by_pairs)
    np.testing.assert_array_equal(np.flatnonzero(by_mask), [1, 6])


# -------------------------------------------------------------------------------- collection


def test_moving_onto_object_collects_in_9_action_mode():
    params = TABULAR.make_params(object_cells=[6, 0], collect_actions=False)
    obs, s, reward, terminated, truncated, _ = step(TABULAR, state(5, [6, 0], [True, True]), RIGHT, params)
    assert float(reward) == 1.0
    assert int(s.agent) == 6
    np.testing.assert_array_equal(s.present, [False, True])
    assert int(obs) == 6 * 4 + 0b10
    assert not bool(terminated) and not bool(truncated)


def test_collecting_term_prob_one_terminates_and_resets():
    params = TABULAR.make_params(object_cells=[6, 0])
    obs, s, reward, terminated, truncated, info = step(TABULAR, state(5, [6, 0], [True, True], time=3), UP_LEFT, params)
    assert float(reward) == -2.0
    assert bool(terminated) and not bool(truncated)
    assert int(info["final_observation"]) == 0 * 4 + 0b01  # on cell 0, object 1 gone
    assert int(s.time) == 0 and bool(s.present.all())  # already the next episode
    assert int(obs) % 4 == 0b11 and int(obs) // 4 not in (0, 6)


def test_18_action_mode_moves_do_not_collect_and_collect_acts_on_adjacent_cells():
    params = TABULAR.make_params(object_cells=[6, 0], collect_actions=True)
    both = [True, True]
    # Moving onto the object does not collect it ...
    _, s, reward, _, _, _ = step(TABULAR, state(5, [6, 0], both), RIGHT, params)
    assert (int(s.agent), float(reward)) == (6, 0.0) and bool(s.present[0])
    # ... collecting on the own cell does, without moving.
    _, s, reward, _, _, _ = step(TABULAR, s, COLLECT + STAY, params)
    assert (int(s.agent), float(reward)) == (6, 1.0) and not bool(s.present[0])
    # Collecting the adjacent cell in direction d.
    _, s, reward, _, _, _ = step(TABULAR, state(5, [6, 0], both), COLLECT + RIGHT, params)
    assert (int(s.agent), float(reward)) == (5, 1.0)
    np.testing.assert_array_equal(s.present, [False, True])
    # The wrong direction or a non-adjacent object collect nothing; the diagonal neighbour does.
    for agent, action in ((5, COLLECT + LEFT), (4, COLLECT + RIGHT)):
        _, s, reward, _, _, _ = step(TABULAR, state(agent, [6, 0], both), action, params)
        assert float(reward) == 0.0 and bool(s.present.all()), (agent, action)
    _, s, reward, _, _, _ = step(TABULAR, state(1, [6, 0], both), COLLECT + DOWN_RIGHT, params)
    assert float(reward) == 1.0 and not bool(s.present[0])
    # Cell 8 = (2, 0) is the flat neighbour of cell 7 = (1, 3) but not adjacent on the grid.
    params_edge = TABULAR.make_params(object_cells=[8, 0], collect_actions=True)
    _, s, reward, _, _, _ = step(TABULAR, state(7, [8, 0], both), COLLECT + RIGHT, params_edge)
    assert float(reward) == 0.0 and bool(s.present[0])


@pytest.mark.parametrize(
    "collect_actions, invalid", [(False, 9), (False, 13), (False, 17), (False, 99), (False, -1), (True, 18)]
)
def test_invalid_actions_behave_like_stay(collect_actions, invalid):
    params = TABULAR.make_params(object_cells=[6, 0], collect_actions=collect_actions)
    s = state(6, [6, 0], [True, True], time=2)  # standing on object 0
    expected = step(TABULAR, s, STAY, params, seed=4)
    jax.tree.map(np.testing.assert_array_equal, step(TABULAR, s, invalid, params, seed=4), expected)


def test_action_mask():
    np.testing.assert_array_equal(TABULAR.action_mask(TABULAR.make_params()), [True] * 9 + [False] * 9)
    np.testing.assert_array_equal(TABULAR.action_mask(TABULAR.make_params(collect_actions=True)), [True] * 18)
    assert TABULAR.action_space(TABULAR.make_params()).n == 18


# ------------------------------------------------------------------------- termination/respawn


def test_term_prob_zero_never_terminates_and_respawn_one_returns_next_step():
    env = GridWorld(2, 2, objects=[(1.0, 0.0, 1.0)], max_steps=1000)
    params = env.make_params(object_cells=[0])
    s = state(0, [0], [True])
    rewards, present = [], []
    for seed in range(12):  # stay on the object's cell: collect, respawn, collect, ...
        _, s, reward, terminated, truncated, _ = step(env, s, STAY, params, seed=seed)
        assert not bool(terminated) and not bool(truncated)
        rewards.append(float(reward))
        present.append(bool(s.present[0]))
    assert rewards == [1.0, 0.0] * 6
    assert present == [False, True] * 6


def test_respawn_zero_keeps_object_gone():
    params = TABULAR.make_params(object_cells=[6, 0])
    s = state(11, [6, 0], [False, True])
    for seed in range(30):
        _, s, reward, terminated, truncated, _ = step(TABULAR, s, STAY, params, seed=seed)
        assert not bool(s.present[0]) and float(reward) == 0.0 and not bool(terminated | truncated)


def test_term_and_respawn_frequencies_match_probabilities():
    params = TABULAR.make_params(object_cells=[6, 0], term_probs=[0.5, 0.0], respawn_probs=[1.0, 0.3])
    # Object 0 is collected (term 0.5) while absent object 1 may respawn (0.3), 4000 times.
    _, s, reward, terminated, _, info = step_many(TABULAR, state(5, [6, 0], [True, False]), RIGHT, params, 4000)
    np.testing.assert_array_equal(reward, 1.0)
    assert abs(float(terminated.mean()) - 0.5) < 0.04
    final_present_1 = np.asarray(info["final_observation"]) & 0b10
    assert abs(float((final_present_1 > 0).mean()) - 0.3) < 0.04
    # A just-collected object is never back in the same step (even with ε_respawn = 1).
    assert not (np.asarray(info["final_observation"]) & 0b01).any()


def test_time_limit_truncates_exactly_at_max_steps():
    params = TABULAR.make_params(object_cells=[6, 0], max_steps=5)
    s = state(11, [6, 0], [True, True])
    for t in range(1, 6):
        obs, s, _, terminated, truncated, info = step(TABULAR, s, STAY, params, seed=t)
        assert not bool(terminated)
        assert bool(truncated) == (t == 5)
    assert int(s.time) == 0
    assert int(info["final_observation"]) == 11 * 4 + 0b11


# ----------------------------------------------------------------------- tabular layouts/starts


def test_tabular_reset_starts_on_free_cells_uniformly():
    env = GridWorld(3, 4, objects=[(1.0, 0.0, 0.0), (-2.0, 1.0, 1.0)], max_steps=100, walls=[(0, 1), (1, 2)])
    params = env.make_params(object_cells=[3, 8])
    obs, s = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), 2000), params)
    allowed = {0, 2, 4, 5, 7, 9, 10, 11}  # not a wall (1, 6), not an object (3, 8)
    counts = np.bincount(np.asarray(s.agent), minlength=12)
    assert set(np.flatnonzero(counts)) == allowed
    assert counts[list(allowed)].min() > 2000 / len(allowed) * 0.7  # roughly uniform
    np.testing.assert_array_equal(s.object_cells, np.broadcast_to([3, 8], (2000, 2)))
    np.testing.assert_array_equal(np.asarray(obs) % 4, 0b11)
    np.testing.assert_array_equal(s.time, 0)


def test_tabular_sample_params_layouts():
    env = GridWorld(3, 4, objects=[(1.0, 0.0, 0.0)] * 3, max_steps=100, walls=[(0, 1), (1, 2)])
    keys = jax.random.split(jax.random.key(1), 600)
    sample = jax.jit(jax.vmap(env.sample_params, in_axes=(0, None, None)))  # one compile, prob traced
    params = sample(keys, None, 0.5)
    cells = np.asarray(params.object_cells)
    assert all(len(set(row)) == 3 for row in cells), "object cells must be distinct"
    assert not np.isin(cells, [1, 6]).any(), "objects on walls"
    assert len({tuple(sorted(row)) for row in cells}) > 30  # layouts vary across lifetimes
    assert set(np.unique(cells)) == {0, 2, 3, 4, 5, 7, 8, 9, 10, 11}
    assert abs(float(params.collect_actions.mean()) - 0.5) < 0.08
    # Start cells exclude the sampled objects.
    start = np.asarray(params.start_cells)
    for i in range(5):
        valid = set(start[i, : int(params.num_start_cells[i])])
        assert valid == {0, 2, 3, 4, 5, 7, 8, 9, 10, 11} - set(cells[i])
    for prob in (0.0, 1.0):
        np.testing.assert_array_equal(sample(keys, None, prob).collect_actions, bool(prob))


# ----------------------------------------------------------------------------- random mode


def test_random_reset_resamples_positions():
    params = RANDOM.make_params()
    obs, s = jax.vmap(RANDOM.reset, in_axes=(0, None))(jax.random.split(jax.random.key(2), 1500), params)
    cells = np.concatenate([np.asarray(s.object_cells), np.asarray(s.agent)[:, None]], axis=1)  # [K, N+1]
    assert all(len(set(row)) == 4 for row in cells), "objects and agent must be on distinct cells"
    assert not np.isin(cells, list(RANDOM_WALLS)).any()
    assert len({tuple(row) for row in cells}) > 1000  # a new layout nearly every episode
    free = sorted(set(range(16)) - RANDOM_WALLS)
    for column in range(4):
        counts = np.bincount(cells[:, column], minlength=16)[free]
        assert counts.min() > 1500 / 14 * 0.6, column  # every free cell, roughly uniformly
    obs = np.asarray(obs)
    np.testing.assert_array_equal(obs.sum(axis=(1, 2)), np.broadcast_to([2, 1, 1], (1500, 3)))


def test_random_respawn_at_free_cells():
    params = RANDOM.make_params(collect_actions=True)
    # Objects 0 and 1 (ε_respawn = 1) are absent; object 2 sits on cell 10; the agent on cell 5.
    s = state(5, [1, 2, 10], [False, False, True])
    _, s, reward, _, _, _ = step_many(RANDOM, s, STAY, params, 3000)
    np.testing.assert_array_equal(reward, 0.0)
    np.testing.assert_array_equal(s.present, True)
    cells = np.asarray(s.object_cells)
    np.testing.assert_array_equal(cells[:, 2], 10)
    assert (cells[:, 0] != cells[:, 1]).all(), "two respawns in one step must not share a cell"
    allowed = sorted(set(range(16)) - RANDOM_WALLS - {5, 10})
    for column in range(2):
        counts = np.bincount(cells[:, column], minlength=16)
        assert set(np.flatnonzero(counts)) == set(allowed)
        assert counts[allowed].min() > 3000 / len(allowed) * 0.7


def test_random_collect_clears_channel():
    params = RANDOM.make_params(collect_actions=False)
    obs, s, reward, _, _, _ = step(RANDOM, state(5, [6, 2, 9], [True, True, True]), DOWN, params)
    assert float(reward) == -1.0  # object 2 on cell 9 = (2, 1), below the agent
    np.testing.assert_array_equal(s.present, [True, True, False])
    obs = np.asarray(obs).reshape(16, 3)
    assert obs[:, 1].sum() == 0 and obs[9, 2] == 1.0 and obs[[6, 2], 0].tolist() == [1.0, 1.0]
    # ε_respawn = 0: it stays gone.
    for seed in range(10):
        _, s, _, _, _, _ = step(RANDOM, s, STAY, params, seed=seed)
        assert not bool(s.present[2])


# ------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="pixels"), "pixels"),
        (dict(height=0), "height"),
        (dict(width=-2), "-2"),
        (dict(max_steps=0), "max_steps"),
        (dict(height=2.5), "2.5"),
        (dict(objects=[(1.0, -0.1, 0.0)]), "-0.1"),
        (dict(objects=[(1.0, 0.0, 1.5)]), "1.5"),
        (dict(objects=[(1.0, 0.0)]), "triples"),
        (dict(objects=[(1.0, 0.0, 0.0), (1.0, 0.0)]), "triples"),
        (dict(objects=[]), "non-empty"),
        (dict(objects=[(1.0, 0.0, 0.0)] * 9, walls=[(0, 0), (1, 1), (2, 2)]), "9 objects need 10 free cells"),
        (dict(walls=np.zeros((4, 3), bool)), r"\(4, 3\)"),
        (dict(walls=[(3, 0)]), r"\[\[3, 0\]\]"),
        (dict(walls=[[0.5, 0.5]]), "float"),
    ],
)
def test_bad_input(kwargs, match):
    config = dict(height=3, width=4, objects=[(1.0, 0.0, 0.0)], max_steps=10)
    config.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GridWorld(**config)


def test_num_states_only_in_tabular_mode():
    with pytest.raises(AttributeError, match="tabular"):
        RANDOM.num_states
