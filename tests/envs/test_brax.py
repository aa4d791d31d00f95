"""The brax adapter (envs/wrappers/brax.py): registry, backends, physics scaling, conformance.

Compiling a brax env dominates the cost here (5-25 s per env and backend on this CPU), so the
tests share three compiled functions (functools.cache), compiled at XLA's lowest backend
optimisation level (`_jit`: LLVM -O0 compiles ~3× faster; nothing checked depends on it; the
code runs slower, which only matters for MJX beyond a step, so MJX rollouts compile normally):
  * `_reacher_data`: reacher on the positional backend (no contacts: the cheapest compile), 3 envs
    with different link lengths and time limits, NUM_STEPS random-action steps. Every step also
    replays brax's own Reacher on the same state and action, so rewards, observations and flags
    are checked against brax rather than against the wrapper itself.
  * `_hopper_data`: hopper on the positional backend, 3 envs: default masses, doubled masses,
    and a tilted (fallen) start, run twice with the masses swapped and traced once.
  * `_pendulum_mjx_data`: one MJX step of inverted_pendulum with 3 different masses: the MJX
    smoke test (MJX steps are the slow ones at run time, so one step).
Tests that take longer (op-by-op rollouts, raw-vs-wrapped rollouts, a rollout on every registered
task and backend) are marked slow: `pytest -m slow -p no:xdist tests/envs/test_brax.py`.
"""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import base
from envs import registry
from envs.task import AgentSpec, Task
from envs.wrappers import brax as brax_wrapper
from tests.envs import transitions

BRAX_NAMES = [name for name in envs.names() if name.startswith("brax/")]
_FAST_COMPILE = {"xla_backend_optimization_level": 0}

REACHER = "brax/reacher-positional"
NUM_ENVS = 3
NUM_STEPS = 12
REACHER_LIMITS = (1000, 3, 5)  # env 0 keeps brax's 1000-step episodes; envs 1, 2 are cut short
REACHER_LENGTHS = ((1.0, 1.0, 1.0), (1.6, 0.7, 1.0), (0.6, 1.5, 1.0))  # body0, body1, target
REACHER_LINKS = (0.1, 0.11)  # brax's reacher.xml: body1 sits 0.1 along body0, the fingertip 0.11 along body1
LOOP_ENV = 1  # the unbatched loops replay this env, past its auto-reset after 3 steps
NUM_LOOP_STEPS = 5

HOPPER = "brax/hopper-positional"
HOPPER_STEPS = 6
HOPPER_MASS = (1.0, 2.0, 1.0)  # every body's mass scale, per env
HOPPER_TILT = (0.0, 0.0, 0.5)  # radians added to the torso angle at reset: env 2 starts fallen
HOPPER_ANGLE_LIMIT = 0.2  # brax's healthy_angle_range

PENDULUM_MJX = "brax/inverted_pendulum"
PENDULUM_MASS = (1.0, 2.0, 0.5)
PENDULUM_FORCE = 2.0  # inside the cart's control range [-3, 3]


def _jit(fn):
    return jax.jit(fn, compiler_options=_FAST_COMPILE)


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _member(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _assert_close(a, b, atol=1e-5):
    if np.issubdtype(np.asarray(a).dtype, np.floating):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)
    else:
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- registry


def test_import_envs_lists_brax_tasks_without_building_or_importing_brax():
    # A fresh process: this one has built tasks by now.
    code = (
        "import sys, envs; from envs import registry; "
        "names = [n for n in envs.names() if n.startswith('brax/')]; "
        "assert len(names) == 44, names; "
        "assert not any(isinstance(registry._REGISTRY[n], envs.Task) for n in names); "
        "assert 'brax' not in sys.modules and 'mujoco' not in sys.modules, 'brax imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_brax_names_follow_the_backend_table():
    assert BRAX_NAMES == list(brax_wrapper.registered_tasks())
    expected = set()
    for env_name, backends in brax_wrapper.SUPPORTED_BACKENDS.items():
        expected |= {f"brax/{env_name}" if b == "mjx" else f"brax/{env_name}-{b}" for b in backends}
    for family in ("hopper", "reacher"):
        expected |= {f"brax/random_{family}" if b == "mjx" else f"brax/random_{family}-{b}"
                     for b in brax_wrapper.SUPPORTED_BACKENDS[family]}
    assert set(BRAX_NAMES) == expected
    assert len(BRAX_NAMES) == 9 * 4 + 2 * 4  # every env runs on every backend (brax 0.14.2)
    names = envs.names()
    assert names[names.index(BRAX_NAMES[0]):] == BRAX_NAMES  # listed together, after the gymnax tasks
    assert max(i for i, n in enumerate(names) if n.startswith("gymnax/")) < names.index(BRAX_NAMES[0])


_EXPECTED_LIFETIME = {"inverted_pendulum": 1_000_000, "inverted_double_pendulum": 1_000_000,
                      "reacher": 1_000_000, "hopper": 5_000_000, "halfcheetah": 5_000_000,
                      "walker2d": 5_000_000, "pusher": 5_000_000, "ant": 10_000_000, "humanoid": 10_000_000}


@pytest.mark.parametrize("name", BRAX_NAMES)
def test_every_brax_task_builds_on_its_backend(name):
    task = envs.make(name)
    env_name, backend, family = brax_wrapper.parse_task_name(name)
    assert isinstance(task, Task) and task.name == name and envs.make(name) is task
    env = task.env
    assert isinstance(env, brax_wrapper.BraxEnv)
    assert (env.env_name, env.backend) == (env_name, backend)
    assert env.unwrapped.backend == backend  # brax's own record of its pipeline
    assert task.agent == AgentSpec("mlp", hidden=(64, 64), continuous_policy="tanh_gaussian")
    assert task.learning_rates == (3e-4, 1e-3, 2.5e-3)
    assert task.discounts == registry.DISCOUNTS
    assert task.lifetime_steps == _EXPECTED_LIFETIME[env_name]
    assert (env.randomization is None) == (family is None)
    space = env.action_space()
    assert isinstance(space, base.Box) and space.dtype == jnp.float32
    assert space.shape == (env.num_actions,) == (env.unwrapped.action_size,)
    assert np.all(np.isfinite(space.low)) and np.all(space.low < space.high)  # tanh-Gaussian needs bounds


def test_bad_backend_and_env_names():
    with pytest.raises(ValueError, match=r"'warp'.*mjx, generalized, positional, spring"):
        brax_wrapper.BraxEnv("hopper", "warp")
    with pytest.raises(ValueError, match=r"'swimmer'.*hopper"):
        brax_wrapper.BraxEnv("swimmer")
    with pytest.raises(ValueError, match=r"auto_reset='never'"):
        brax_wrapper.BraxEnv("hopper", "positional", auto_reset="never")


def test_unsupported_env_backend_pair_lists_the_env_backends(monkeypatch):
    monkeypatch.setitem(brax_wrapper.SUPPORTED_BACKENDS, "hopper", ("mjx", "spring"))
    message = r"'hopper' does not run on backend 'positional'; its backends: mjx, spring"
    with pytest.raises(ValueError, match=message):
        brax_wrapper.BraxEnv("hopper", "positional")


def test_randomization_validation():
    with pytest.raises(ValueError, match="hopper's bodies"):
        brax_wrapper.brax_task("walker2d", backend="positional", randomize="hopper")
    with pytest.raises(ValueError, match="randomize='ant'"):
        brax_wrapper.brax_task("ant", randomize="ant")
    with pytest.raises(ValueError, match=r"PhysicsRanges.mass=\(0.0, 2.0\)"):
        brax_wrapper.PhysicsRanges(mass=(0.0, 2.0))
    with pytest.raises(ValueError, match="'shin'"):
        brax_wrapper.BraxEnv("hopper", "positional", randomization=brax_wrapper.PhysicsRanges(bodies=("shin",)))


# -------------------------------------------------------------------------- physics params


@functools.cache
def _env(name):
    return envs.make(name).env


def _scaled(env, **scales):
    params = env.default_params.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in scales.items()})
    return jax.device_get(env.scaled_system(params))


@pytest.mark.parametrize("name", ["brax/hopper-generalized", "brax/ant", "brax/reacher"])
def test_default_params_reproduce_brax_system_bit_for_bit(name):
    env = _env(name)
    scaled = jax.device_get(env.scaled_system(env.default_params))
    assert jax.tree.structure(scaled) == jax.tree.structure(env.sys)
    jax.tree.map(np.testing.assert_array_equal, scaled, jax.device_get(env.sys))


def _effective(sys):
    """What the positional and spring pipelines use: m^(1−σ_m), diag(I)^(1−σ_I)."""
    return (sys.link.inertia.mass ** (1 - sys.spring_mass_scale),
            np.diagonal(sys.link.inertia.i, axis1=-2, axis2=-1) ** (1 - sys.spring_inertia_scale))


@pytest.mark.parametrize("name", [HOPPER, "brax/halfcheetah-spring"])  # σ_m = 1 and 0.3
def test_default_params_keep_the_effective_inertia_of_positional_and_spring(name):
    env = _env(name)
    base_sys, scaled = jax.device_get(env.sys), jax.device_get(env.scaled_system(env.default_params))
    rewritten = ("link.inertia.mass", "link.inertia.i", "spring_mass_scale", "spring_inertia_scale")
    for (path, new), old in zip(jax.tree_util.tree_leaves_with_path(scaled), jax.tree.leaves(base_sys)):
        if jax.tree_util.keystr(path).lstrip(".") not in rewritten:
            np.testing.assert_array_equal(new, old, err_msg=jax.tree_util.keystr(path))
    np.testing.assert_array_equal(scaled.spring_mass_scale, 0.0)
    np.testing.assert_array_equal(scaled.spring_inertia_scale, 0.0)
    for new, old in zip(_effective(scaled), _effective(base_sys)):
        np.testing.assert_allclose(new, old, rtol=1e-6)


def test_mass_gravity_friction_reach_the_mjx_and_the_brax_fields():
    env = _env("brax/hopper-generalized")  # bodies: world, torso, thigh, leg, foot (a chain)
    base_sys = jax.device_get(env.sys)
    mass = np.array([1.0, 2.0, 1.0, 1.0, 0.5], np.float32)  # world first
    new = _scaled(env, mass_scale=mass[1:], gravity_scale=1.5, friction_scale=0.5)
    np.testing.assert_allclose(new.body_mass, base_sys.body_mass * mass)
    np.testing.assert_allclose(new.link.inertia.mass, base_sys.link.inertia.mass * mass[1:])
    np.testing.assert_allclose(new.body_inertia, base_sys.body_inertia * mass[:, None])
    np.testing.assert_allclose(new.link.inertia.i, base_sys.link.inertia.i * mass[1:, None, None])
    # A chain: each body's subtree is itself and everything below it.
    np.testing.assert_allclose(new.body_subtreemass, np.cumsum(new.body_mass[::-1])[::-1], rtol=1e-6)
    np.testing.assert_allclose(new.body_invweight0, base_sys.body_invweight0 / mass[:, None])
    np.testing.assert_allclose(new.link.invweight, base_sys.link.invweight / mass[1:])
    dof_mass = mass[[1, 1, 1, 2, 3, 4]]  # rootx, rootz, rooty on the torso, then one hinge per body
    np.testing.assert_allclose(new.dof_invweight0, base_sys.dof_invweight0 / dof_mass)
    np.testing.assert_allclose(new.dof.invweight, base_sys.dof.invweight / dof_mass)
    np.testing.assert_allclose(new.gravity, [0.0, 0.0, -9.81 * 1.5], rtol=1e-6)
    np.testing.assert_allclose(new.opt.gravity, [0.0, 0.0, -9.81 * 1.5], rtol=1e-6)
    np.testing.assert_allclose(new.geom_friction, base_sys.geom_friction * 0.5)
    for field in ("geom_size", "geom_pos", "body_pos", "body_ipos"):  # geometry untouched
        np.testing.assert_array_equal(getattr(new, field), getattr(base_sys, field))
    # The positional backend's hopper weighs every link 1 (σ_m = 1): the scales act on that.
    positional = _env(HOPPER)
    effective_mass, effective_inertia = _effective(_scaled(positional, mass_scale=mass[1:]))
    np.testing.assert_allclose(effective_mass, mass[1:])
    np.testing.assert_allclose(effective_inertia, np.broadcast_to(mass[1:, None], (4, 3)))


def test_thickness_scales_capsule_radii_and_the_inertia_across_the_long_axis():
    env = _env("brax/hopper-generalized")
    base_sys = jax.device_get(env.sys)
    new = _scaled(env, thickness_scale=[2.0, 1.0, 1.0, 1.0])  # the torso
    torso_geom = 1
    np.testing.assert_allclose(new.geom_size[torso_geom], [0.1, 0.2, 0.0], rtol=1e-6)  # radius 0.05 -> 0.1
    np.testing.assert_allclose(new.geom_rbound[torso_geom], 0.1 + 0.2, rtol=1e-6)  # capsule: r + h
    others = np.arange(len(new.geom_size)) != torso_geom
    np.testing.assert_array_equal(new.geom_size[others], base_sys.geom_size[others])
    # The torso capsule's long axis is its principal z. Second moments S = (ΣI)/2 − I: S_x = S_y
    # = I_z/2 (across), S_z = I_x − I_z/2 (along). Doubling the thickness multiplies S_x, S_y by
    # 4, so I_x = S_y + S_z gains 1.5 I_z and I_z = S_x + S_y becomes 4 I_z (a capsule's axial
    # moment goes with r² at fixed mass).
    ix, iy, iz = base_sys.body_inertia[1]
    np.testing.assert_allclose(new.body_inertia[1], [ix + 1.5 * iz, iy + 1.5 * iz, 4 * iz], rtol=1e-5)
    np.testing.assert_allclose(np.diagonal(new.link.inertia.i[0]), new.body_inertia[1])
    np.testing.assert_array_equal(new.body_mass, base_sys.body_mass)  # thickness keeps the mass
    # Positional: the effective inertia (1 for the hopper, σ_I = 1) changes by the same factors.
    _, effective_inertia = _effective(_scaled(_env(HOPPER), thickness_scale=[2.0, 1.0, 1.0, 1.0]))
    np.testing.assert_allclose(effective_inertia[0], new.body_inertia[1] / base_sys.body_inertia[1], rtol=1e-6)


def test_length_scales_the_link_frame_and_its_children():
    env = _env(REACHER)  # bodies: world, body0, body1 (+ the fused fingertip), target
    base_sys = jax.device_get(env.sys)
    new = _scaled(env, length_scale=[2.0, 0.5, 1.0])
    np.testing.assert_allclose(new.body_pos[2], [0.2, 0.0, 0.0], rtol=1e-6)  # body1 sits at the end of body0
    np.testing.assert_allclose(new.link.transform.pos[1], [0.2, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(new.body_pos[[1, 3]], base_sys.body_pos[[1, 3]])  # children of the world
    link0, link1, fingertip = 6, 7, 8  # geoms: ground, 4 arena sides, root, link0, link1, fingertip, target
    np.testing.assert_allclose(new.geom_pos[[link0, link1, fingertip], 0], [0.1, 0.025, 0.055], rtol=1e-6)
    np.testing.assert_allclose(new.geom_size[[link0, link1], 1], [0.1, 0.025], rtol=1e-6)  # half-lengths
    np.testing.assert_array_equal(new.geom_size[:, 0], base_sys.geom_size[:, 0])  # radii keep
    np.testing.assert_allclose(new.geom_rbound[[link0, link1, fingertip]], [0.11, 0.035, 0.01], rtol=1e-6)
    np.testing.assert_allclose(new.body_ipos[1:3], base_sys.body_ipos[1:3] * np.array([[2.0], [0.5]]), rtol=1e-6)
    # body0's long axis: stretching it by 2 multiplies S_long by 4; I_long = Σ of the two others keeps.
    inertia = base_sys.body_inertia[1].astype(np.float64)
    moments = inertia.sum() / 2 - inertia
    long = np.argmax(moments)
    expected = inertia + 3 * moments[long] * (np.arange(3) != long)
    np.testing.assert_allclose(new.body_inertia[1], expected, rtol=1e-4)
    np.testing.assert_array_equal(new.body_mass, base_sys.body_mass)


def test_epg_families_draw_log_uniform_scales():
    keys = jax.random.split(jax.random.key(0), 512)
    hopper = jax.device_get(jax.vmap(_env("brax/random_hopper-positional").sample_params)(keys))
    for field in ("mass_scale", "thickness_scale", "friction_scale", "gravity_scale"):
        values = getattr(hopper, field)
        assert values.shape[0] == 512 and np.all((values >= 0.5) & (values <= 2.0)), field
        assert abs(np.log(values).mean()) < 0.1 and values.min() < 0.55 and values.max() > 1.8, field
    assert hopper.mass_scale.shape == (512, 4)
    assert np.all(hopper.mass_scale[:, 0] != hopper.mass_scale[:, 1])  # drawn per body
    np.testing.assert_array_equal(hopper.length_scale, 1.0)
    reacher = jax.device_get(jax.vmap(_env("brax/random_reacher-positional").sample_params)(keys))
    arm = reacher.length_scale[:, :2]  # body0, body1; the target body keeps its scale
    assert np.all((arm >= 0.5) & (arm <= 2.0)) and arm.min() < 0.55 and arm.max() > 1.8
    np.testing.assert_array_equal(reacher.length_scale[:, 2], 1.0)
    for field in ("mass_scale", "thickness_scale", "friction_scale", "gravity_scale"):
        np.testing.assert_array_equal(getattr(reacher, field), 1.0)
    np.testing.assert_array_equal(reacher.max_steps_in_episode, 1000)


# ------------------------------------------------------------------- conformance (reacher)


def _reacher_transition(env, raw_env, params, carry, key):
    obs, state = carry
    key_action, key_step = jax.random.split(key)
    action = env.action_space().sample(key_action)
    next_obs, next_state, out = transitions.step_record(env, params, obs, state, action, key_step)
    # brax's own Reacher on the same state and action (a copy of the metrics: brax updates them in place).
    raw = raw_env.step(state.physics.replace(metrics=dict(state.physics.metrics)), action)
    out.update(
        q=state.physics.pipeline_state.q,
        raw_obs=raw.obs,
        raw_reward=raw.reward,
        raw_done=raw.done,
    )
    return (next_obs, next_state), out


def _reacher_rollout(env, raw_env, key, params):
    key_reset, key_steps = jax.random.split(key)
    carry = env.reset(key_reset, params)
    transition = functools.partial(_reacher_transition, env, raw_env, params)
    _, outs = jax.lax.scan(transition, carry, jax.random.split(key_steps, NUM_STEPS))
    return carry, outs


def _reacher_params(env):
    return _stack([env.default_params.replace(length_scale=jnp.array(lengths, jnp.float32),
                                              max_steps_in_episode=jnp.int32(limit))
                   for lengths, limit in zip(REACHER_LENGTHS, REACHER_LIMITS)])


@functools.cache
def _reacher_data():
    env = _env(REACHER)
    raw_env = brax_wrapper.make_brax_env("reacher", "positional", scalable=False)  # brax's class
    keys = jax.random.split(jax.random.key(7), NUM_ENVS)
    params = _reacher_params(env)
    rollout = _jit(jax.vmap(lambda key, p: _reacher_rollout(env, raw_env, key, p)))
    initial, outs = jax.device_get(rollout(keys, params))
    _, again = jax.device_get(rollout(keys, params))
    return env, keys, jax.device_get(params), initial, outs, again


def test_spaces_and_dtypes():
    env, _, _, _, outs, _ = _reacher_data()
    obs_space, action_space = env.observation_space(), env.action_space()
    assert isinstance(obs_space, base.Box) and obs_space.shape == (11,) and obs_space.dtype == jnp.float32
    assert isinstance(action_space, base.Box) and action_space.shape == (2,) and env.num_actions == 2
    np.testing.assert_array_equal(action_space.low, -1.0)
    np.testing.assert_array_equal(action_space.high, 1.0)
    for key in ("obs", "next_obs", "final_obs"):
        assert outs[key].shape == (NUM_ENVS, NUM_STEPS, 11) and outs[key].dtype == np.float32, key
        assert np.all(np.isfinite(outs[key])), key
    assert outs["action"].shape == (NUM_ENVS, NUM_STEPS, 2) and outs["action"].dtype == np.float32
    for key, dtype in (("reward", np.float32), ("terminated", bool), ("truncated", bool), ("time", np.int32)):
        assert outs[key].shape == (NUM_ENVS, NUM_STEPS) and outs[key].dtype == dtype, key


def test_matches_brax_reacher_at_default_physics():
    _, _, _, _, outs, _ = _reacher_data()
    default = 0  # env 0 has brax's physics; the others have other link lengths
    _assert_close(outs["reward"][default], outs["raw_reward"][default])
    _assert_close(outs["final_obs"][default], outs["raw_obs"][default])
    np.testing.assert_array_equal(outs["terminated"], outs["raw_done"] > 0.5)
    # Other link lengths change the transition: the raw replay (brax's System) disagrees.
    assert not np.allclose(outs["final_obs"][1:], outs["raw_obs"][1:], atol=1e-3)


def test_reacher_observation_follows_the_link_lengths():
    """obs[8:11] is fingertip − target, with the fingertip at 0.1·l0 along body0 plus 0.11·l1
    along body1 (both at height 0.01, as is the target). Checked on the states a reset builds
    from q by forward kinematics (the positional backend then lets joints stretch and the arm
    sag slightly under gravity)."""
    _, _, params, _, outs, _ = _reacher_data()
    done = outs["terminated"] | outs["truncated"]
    fresh = np.zeros_like(done)
    fresh[:, 0], fresh[:, 1:] = True, done[:, :-1]  # steps whose observation comes from a reset
    env_index = np.broadcast_to(np.arange(NUM_ENVS)[:, None], done.shape)[fresh]
    q, obs = outs["q"][fresh], outs["obs"][fresh]
    assert len(set(env_index)) == NUM_ENVS and len(q) > NUM_ENVS

    def tip_to_target(lengths):  # lengths [N, 3] -> [N, 3]
        reach0, reach1 = REACHER_LINKS[0] * lengths[:, 0], REACHER_LINKS[1] * lengths[:, 1]
        tip_x = reach0 * np.cos(q[:, 0]) + reach1 * np.cos(q[:, 0] + q[:, 1])
        tip_y = reach0 * np.sin(q[:, 0]) + reach1 * np.sin(q[:, 0] + q[:, 1])
        return np.stack([tip_x - q[:, 2], tip_y - q[:, 3], np.zeros_like(tip_x)], axis=-1)

    np.testing.assert_allclose(obs[:, 8:11], tip_to_target(params.length_scale[env_index]), atol=1e-6)
    scaled = env_index > 0
    unscaled = tip_to_target(np.ones((len(q), 3)))
    assert np.abs(obs[scaled, 8:11] - unscaled[scaled]).min(axis=0)[:2].max() > 0.01  # the check can fail


def test_auto_reset_and_final_observation():
    _, _, _, _, outs, _ = _reacher_data()
    done = outs["terminated"] | outs["truncated"]
    assert done[1:].any(axis=1).all(), "short-limit envs must end episodes"
    np.testing.assert_array_equal(outs["next_time"], np.where(done, 0, outs["time"] + 1))
    np.testing.assert_array_equal(outs["obs"][:, 1:], outs["next_obs"][:, :-1])
    _assert_close(outs["final_obs"][~done], outs["next_obs"][~done])
    # After an episode end the next observation starts a new one: the arm is back near its
    # initial pose (q ∈ init_q ± 0.1) and the target has moved.
    assert not np.allclose(outs["final_obs"][done], outs["next_obs"][done], atol=1e-3)
    q_next = outs["q"][:, 1:][done[:, :-1]]
    assert np.all(np.abs(q_next[:, 0]) <= 0.1 + 1e-6) and np.all(np.abs(q_next[:, 1]) <= 0.1 + 1e-6)


def test_truncated_at_the_time_limit_and_never_terminated():
    _, _, params, _, outs, _ = _reacher_data()
    limit = params.max_steps_in_episode[:, None]
    np.testing.assert_array_equal(outs["truncated"], outs["time"] + 1 >= limit)
    assert not outs["terminated"].any()  # reacher has no terminal state
    assert outs["truncated"].sum(axis=1).tolist() == [0] + [NUM_STEPS // n for n in REACHER_LIMITS[1:]]


def test_a_non_finite_step_terminates_and_resets():
    """A NaN action (a diverged policy) makes brax's state NaN; reacher never terminates by itself,
    but the wrapper ends that episode and the next observation is a fresh, finite one."""
    env = _env(REACHER)
    params = env.default_params
    step = _jit(lambda key, state, action: env.step(key, state, action, params))
    _, state = _jit(lambda key: env.reset(key, params))(jax.random.key(0))
    for action, nan_step in ((jnp.zeros(2), False), (jnp.full(2, jnp.nan), True)):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(1), state, action)
        assert bool(terminated) == nan_step and not bool(truncated)
        assert np.isfinite(info["final_observation"]).all() != nan_step  # the NaN state is the final one
        assert np.isfinite(obs).all() and int(state.time) == (0 if nan_step else 1)


def test_same_key_same_result_and_keys_matter():
    _, _, _, _, outs, again = _reacher_data()
    jax.tree.map(np.testing.assert_array_equal, outs, again)
    assert not np.allclose(outs["obs"][0, 0], outs["obs"][1, 0])


def _loop(step_fn, initial, params, key, num_steps):
    """Replays `_reacher_rollout`'s first steps for one env with `step_fn`, unbatched."""
    _, key_steps = jax.random.split(key)
    (obs, state), env = initial, _env(REACHER)
    outs = []
    for step_key in jax.random.split(key_steps, NUM_STEPS)[:num_steps]:
        key_action, key_step = jax.random.split(step_key)
        action = env.action_space().sample(key_action)
        next_obs, state, reward, terminated, truncated, info = step_fn(key_step, state, action, params)
        outs.append(dict(obs=obs, action=action, reward=reward, terminated=terminated, truncated=truncated,
                         final_obs=info["final_observation"], next_obs=next_obs))
        obs = next_obs
    return jax.device_get(_stack(outs))


def _check_replay(replayed):
    _, _, _, _, outs, _ = _reacher_data()
    batched = {k: outs[k][LOOP_ENV, :NUM_LOOP_STEPS] for k in replayed}
    assert batched["truncated"].any()  # the comparison crosses an auto-reset
    jax.tree.map(_assert_close, replayed, batched)


def test_vmapped_scan_equals_loop_of_jitted_steps():
    env, keys, params, initial, _, _ = _reacher_data()
    step = _jit(env.step)
    _check_replay(_loop(step, _member(initial, LOOP_ENV), _member(params, LOOP_ENV), keys[LOOP_ENV],
                        NUM_LOOP_STEPS))


@pytest.mark.slow  # op by op, a brax step takes seconds
def test_jit_equals_eager():
    env, keys, params, initial, _, _ = _reacher_data()
    with jax.disable_jit():
        replayed = _loop(env.step, _member(initial, LOOP_ENV), _member(params, LOOP_ENV), keys[LOOP_ENV],
                         NUM_LOOP_STEPS)
    _check_replay(replayed)


# --------------------------------------------------------- termination, randomised physics


_HOPPER_TRACES = []


def _hopper_rollout(env, key, params, tilt):
    _HOPPER_TRACES.append(1)  # a Python side effect: runs once per trace, not per call
    _, state = env.reset(key, params)
    # Tilt the torso (q[2], the root hinge) by `tilt` and rebuild the physics state from it.
    pipeline = state.physics.pipeline_state
    pipeline = env.physics_env(params).pipeline_init(pipeline.q.at[2].add(tilt), pipeline.qd)
    state = state.replace(physics=state.physics.replace(pipeline_state=pipeline))

    def transition(state, step_key):
        key_action, key_step = jax.random.split(step_key)
        action = env.action_space().sample(key_action)
        next_obs, state, reward, terminated, truncated, info = env.step(key_step, state, action, params)
        return state, dict(reward=reward, terminated=terminated, truncated=truncated,
                           final_obs=info["final_observation"], next_obs=next_obs)

    return jax.lax.scan(transition, state, jax.random.split(key, HOPPER_STEPS))[1]


def _hopper_params(env, masses):
    return _stack([env.default_params.replace(mass_scale=jnp.full((env.num_links,), m, jnp.float32))
                   for m in masses])


@functools.cache
def _hopper_data():
    env = _env(HOPPER)
    keys = jnp.stack([jax.random.key(3)] * NUM_ENVS)  # one key: the same start and actions for all
    rollout = _jit(jax.vmap(lambda key, p, tilt: _hopper_rollout(env, key, p, tilt)))
    tilts = jnp.array(HOPPER_TILT)
    outs = jax.device_get(rollout(keys, _hopper_params(env, HOPPER_MASS), tilts))
    swapped = jax.device_get(rollout(keys, _hopper_params(env, HOPPER_MASS[1::-1] + HOPPER_MASS[2:]), tilts))
    return outs, swapped


def test_fallen_hopper_terminates_without_truncation():
    outs, _ = _hopper_data()
    fallen = 2
    assert outs["terminated"][fallen, 0] and not outs["truncated"][fallen].any()
    torso_angle = 1  # obs: torso z, torso angle, joint angles, velocities
    assert abs(outs["final_obs"][fallen, 0, torso_angle]) >= HOPPER_ANGLE_LIMIT
    # The next observation is a fresh start: upright (±5e-3 reset noise) at z ≈ 1.25.
    assert abs(outs["next_obs"][fallen, 0, torso_angle]) < 0.01
    assert abs(outs["next_obs"][fallen, 0, 0] - 1.25) < 0.01
    # Upright hoppers under random actions stay healthy for these few steps.
    assert not outs["terminated"][:fallen].any() and not outs["truncated"].any()


def test_physics_randomised_batch_compiles_once_and_steps_differently_positional():
    outs, swapped = _hopper_data()
    assert len(_HOPPER_TRACES) == 1  # two calls with different masses: one trace, one compile
    # Same start and actions, doubled masses: a different trajectory from the first step on.
    assert np.abs(outs["next_obs"][0, 0] - outs["next_obs"][1, 0]).max() > 1e-3
    # Swapping two envs' masses swaps their trajectories: each env steps with its own physics.
    for key in outs:
        _assert_close(swapped[key][[1, 0, 2]], outs[key])


_MJX_TRACES = []


def _pendulum_step(env, key, params):
    _MJX_TRACES.append(1)
    key_reset, key_step = jax.random.split(key)
    _, state = env.reset(key_reset, params)
    action = jnp.full((env.num_actions,), PENDULUM_FORCE, jnp.float32)
    return env.step(key_step, state, action, params)


@functools.cache
def _pendulum_mjx_data():
    env = _env(PENDULUM_MJX)
    keys = jnp.stack([jax.random.key(5)] * NUM_ENVS)
    masses = [env.default_params.replace(mass_scale=jnp.full((env.num_links,), m, jnp.float32))
              for m in PENDULUM_MASS]
    step = _jit(jax.vmap(lambda key, p: _pendulum_step(env, key, p)))
    first = jax.device_get(step(keys, _stack(masses)))
    swapped = jax.device_get(step(keys, _stack([masses[1], masses[0], masses[2]])))
    return env, first, swapped


def test_mjx_smoke_step_with_randomised_masses():
    env, (obs, state, reward, terminated, truncated, info), swapped = _pendulum_mjx_data()
    assert env.backend == "mjx" and env.unwrapped.backend == "mjx"
    assert obs.shape == (NUM_ENVS, 4) and obs.dtype == np.float32 and np.all(np.isfinite(obs))
    assert reward.dtype == np.float32 and terminated.dtype == truncated.dtype == bool
    np.testing.assert_array_equal(state.time, 1)
    assert len(_MJX_TRACES) == 1  # two calls with different masses, one trace
    # The same push accelerates a heavier cart less: cart velocities order as 1 / mass.
    cart_velocity = obs[:, 2]  # obs: cart position, pole angle, cart velocity, pole angular velocity
    assert cart_velocity[1] < cart_velocity[0] < cart_velocity[2]
    _assert_close(swapped[0][[1, 0, 2]], obs)


# -------------------------------------------------------------------------------- slow checks


@pytest.mark.slow
def test_raw_vs_wrapped_step_fns_compute_the_same_rollout():
    raw, wrapped = brax_wrapper.raw_vs_wrapped_step_fns(REACHER, num_envs=2, num_steps=5)
    key = jax.random.key(3)
    # (total reward, observation sum); no episode ends in 5 steps.
    np.testing.assert_allclose(np.asarray(raw(key)), np.asarray(wrapped(key)), rtol=1e-5)


@pytest.mark.slow
def test_initial_auto_reset_restarts_from_the_first_state():
    env = brax_wrapper.BraxEnv("reacher", "positional", auto_reset="initial")
    params = env.default_params.replace(max_steps_in_episode=jnp.int32(3))

    def rollout(key):
        obs, state = env.reset(key, params)

        def transition(state, step_key):
            key_action, key_step = jax.random.split(step_key)
            next_obs, state, _, _, truncated, _ = env.step(key_step, state, env.action_space().sample(key_action),
                                                           params)
            return state, (next_obs, truncated)

        return obs, jax.lax.scan(transition, state, jax.random.split(key, 7))[1]

    first_obs, (next_obs, truncated) = jax.device_get(_jit(rollout)(jax.random.key(0)))
    np.testing.assert_array_equal(truncated, [False, False, True] * 2 + [False])
    np.testing.assert_array_equal(next_obs[2], first_obs)
    np.testing.assert_array_equal(next_obs[5], first_obs)


@pytest.mark.slow
@pytest.mark.parametrize("name", BRAX_NAMES)
def test_registry_conformance_on_every_task_and_backend(name):
    """Every registered task: a jitted, vmapped rollout of 2 lifetimes × 40 random-action steps
    with a 15-step limit: shapes, dtypes, finite observations, flags, auto-reset."""
    task = envs.make(name)
    env = task.env

    def rollout(key):
        key_params, key_reset, key_steps = jax.random.split(key, 3)
        params = task.sample_params(key_params).replace(max_steps_in_episode=jnp.int32(15))
        carry = env.reset(key_reset, params)

        def transition(carry, step_key):
            obs, state = carry
            key_action, key_step = jax.random.split(step_key)
            next_obs, next_state, reward, terminated, truncated, info = env.step(
                key_step, state, env.action_space().sample(key_action), params)
            out = dict(obs=obs, time=state.time, reward=reward, terminated=terminated, truncated=truncated,
                       final_obs=info["final_observation"], next_time=next_state.time)
            return (next_obs, next_state), out

        return jax.lax.scan(transition, carry, jax.random.split(key_steps, 40))[1]

    # -O0 code runs MJX's constraint solver ~10-200× slower (pusher: 28 min for this rollout).
    jit = jax.jit if env.backend == "mjx" else _jit
    outs = jax.device_get(jit(jax.vmap(rollout))(jax.random.split(jax.random.key(0), 2)))
    obs_dim = env.observation_space().shape[0]
    for key in ("obs", "final_obs"):
        assert outs[key].shape == (2, 40, obs_dim) and outs[key].dtype == np.float32, key
        assert np.all(np.isfinite(outs[key])), key
    assert outs["reward"].dtype == np.float32 and np.all(np.isfinite(outs["reward"]))
    np.testing.assert_array_equal(outs["truncated"], outs["time"] + 1 >= 15)
    done = outs["terminated"] | outs["truncated"]
    np.testing.assert_array_equal(outs["next_time"], np.where(done, 0, outs["time"] + 1))
