"""brax environments (Freeman et al. 2021, brax 0.14.2) as registry tasks "brax/<name>", with the
physics backend selectable and the physics randomised per lifetime (EPG's random Hopper/Reacher).

    task = envs.make("brax/hopper-positional")      # or "brax/hopper" (MJX), "brax/random_hopper"
    params = task.sample_params(key)                  # BraxParams: one lifetime's physics
    obs, state = task.env.reset(key, params)
    obs, state, reward, terminated, truncated, info = task.env.step(key, state, action, params)

Only brax's environments are used: its training code does not run on jax 0.10. `BraxEnv` calls
the brax env's own `reset`/`step` (rewards, observations and `done` are brax's), on a shallow copy
of the env whose `sys` is the lifetime's scaled System (`scaled_system`). brax is imported on the
first construction, not by `import envs` (importing it costs ~0.5 s, mostly mujoco.mjx).

Backends. `backend` is one of "mjx" (MuJoCo's JAX port; the default, the reference dynamics),
"generalized", "positional" or "spring" (brax's own pipelines; ~10× faster for locomotion on a
CPU: hopper at 128 envs steps 35k/s with positional, measured below, vs ~4k/s with MJX). Each
env builds its own backend-specific System (e.g. positional/spring use a smaller timestep, more
substeps and other gears), so the same env on two backends is a different, similar task. Every
backend runs every env of this module (`SUPPORTED_BACKENDS`). Checked on brax 0.14.2: every pair
compiles and runs 50 random-action steps with finite observations; the three brax pipelines also
1000 steps without resets (4 envs each); and the slow test over every registered task steps each
through auto-resets. One caveat: inverted_pendulum on "generalized" reaches NaN 30-130 steps *after* the
pole has fallen when nothing resets it (a brax solver instability at the joint limit); with
auto-reset that episode has long ended.

Terminated vs truncated. `terminated` is brax's own `done` (a true terminal, no bootstrapping),
`truncated` the time limit `t >= params.max_steps_in_episode` (1000 by default, brax's usual
episode length), counted by `BraxState.time`; both can be True on one step, consumers give
`terminated` precedence (lpg.returns). A step whose observation or reward is not finite (a NaN
action from a diverged policy, or a solver blow-up) is also `terminated`, so the NaN state is reset
instead of living on: brax's own terminal tests compare with NaN and say "not done", and a NaN
inverted pendulum would otherwise never fall and score every episode the full 1000. (brax's EpisodeWrapper stores the same time limit as
`info["truncation"]`, with a static length and only when not done; the limit here is a traced
param, so short-episode tests and per-lifetime limits need no recompilation.) Per env:

    env                        terminated (brax's done)                            truncated
    ant                        torso height outside [0.2, 1.0]                     t >= limit
    halfcheetah                never                                               t >= limit
    hopper                     torso z <= 0.7, |torso angle| >= 0.2, or |q|/|qd|
                               >= 100 (unhealthy)                                  t >= limit
    humanoid                   torso height outside [1.0, 2.0]                     t >= limit
    inverted_pendulum          |pole angle| > 0.2                                  t >= limit
    inverted_double_pendulum   tip height y <= 1                                   t >= limit
    pusher                     never                                               t >= limit
    reacher                    never                                               t >= limit
    walker2d                   torso z outside (0.8, 2.0) or |angle| >= 1          t >= limit

Auto-reset. When an episode ends, the returned state starts a *fresh* episode: `reset` with the
step's key (brax's dynamics are deterministic, so the step has no other use for it), as the
project's gymnax envs do. The alternative, brax's AutoResetWrapper, restarts every episode of an
env from the state its first `reset` drew (`auto_reset="initial"`): cheaper (no reset computed per
step under vmap) but every episode of an env then starts identically. Measured on this 2-core CPU
(hopper-positional, 128 envs × 1000 random-action steps in one scan, median of 3 alternating
runs): raw brax in its EpisodeWrapper + AutoResetWrapper 3.64 s (35.2k steps/s), BraxEnv
"initial" 3.63 s (35.2k), BraxEnv "fresh" 4.05 s (31.6k). So the wrapper, per-lifetime System
included, costs nothing measurable, and a fresh reset per step ~11%: small enough for the
default to be "fresh", whose episodes start from independent initial states as in every other
env of this project. (`raw_vs_wrapped_step_fns` reproduces the numbers.)

Physics per lifetime. `BraxParams` holds scales of the env's default physics, all 1 by default:
per body (brax's links, i.e. MuJoCo bodies without the world) `mass_scale`, `thickness_scale`
and `length_scale`, global `friction_scale` and `gravity_scale`. `scaled_system(params)` applies
them to the env's System, a pure function of arrays, so lifetimes with different physics are one
vmap and one compilation. The System is an `mjx.Model` extended with brax's own fields, and the
backends read different ones, so every scale is written to both views:

    scale       fields written                                   read by
    mass        body_mass, body_inertia, body_subtreemass;       mjx
                link.inertia.mass, link.inertia.i                generalized, positional, spring
                body_invweight0, dof_invweight0 (÷ scale);       mjx (constraint softness)
                link.invweight, dof.invweight (÷ scale)          generalized (constraint softness)
    gravity     opt.gravity; gravity                             mjx; brax pipelines
    friction    geom_friction (all three coefficients)           every backend (brax's contacts
                                                                 come from mjx.collision)
    thickness   geom_size radius of capsules, spheres,           every backend (collision)
                cylinders; geom_rbound; principal inertia
    length      geom_size half-length of capsules/cylinders,     every backend
                geom_pos, body_ipos, jnt_pos, child body_pos;
                link.transform.pos, link.inertia.transform.pos,
                link.joint.pos; geom_rbound; principal inertia

Mass scales a body's mass and rotational inertia together (a denser body of the same shape).
Thickness and length keep the mass and stretch the body's mass distribution: in the body's
principal frame the axis with the largest second moment S_k = ∫ x_k² dm is the long axis, its
S_k is multiplied by length², the other two by thickness², and I_k = Σ_{j≠k} S_j is rebuilt
(exact for an affine stretch of the body). Length scales every position in the body's frame
(geoms, centre of mass, joint anchors, child bodies), which is a length change for links whose
frame sits at the proximal joint and whose geoms and children lie along the link (the reacher
arm, hopper/walker legs); boxes, planes and meshes keep their sizes. All scales are multiplicative
(the constraint weights `*_invweight0`, which MuJoCo computes once at the reference pose, are
divided by the mass scale, the exact change when all masses scale alike), so the default
params reproduce brax's System bit for bit, with one exception that follows. Not updated:
geom_aabb (unused by MJX's JAX collision) and `sys.mj_model` (static; brax only validates it).

The positional and spring pipelines do not use the masses and inertias as given: they weigh a
link by m^(1−σ_m) and turn it with diag(I)^(1−σ_I), where σ_m, σ_I are each env's
`spring_mass_scale`, `spring_inertia_scale` (brax's custom XML constants). hopper, ant and pusher
have σ_m = 1, so every link weighs 1 and a mass scale would change nothing; σ_I = 1 everywhere
but halfcheetah (0.8), so inertia is ignored too. For these two backends `scale_system` replaces
the link masses and inertias by those effective values and sets both σ to 0 (the same dynamics
at default params, to float rounding), then scales them: mass, thickness and length act on them
as they act on MJX's masses. The tests check that doubling the hopper's masses changes its
positional trajectory and that different masses order an MJX cart's acceleration.

One brax env reads geometry from a constant: Reacher's observation places the fingertip 0.11 m
along the second link. `BraxEnv` uses a Reacher whose observation reads that offset from the
fingertip geom's (scaled) position instead; at default params it is brax's observation exactly.

Families (EPG, Houthooft et al. 2018, §4: "Hopper (with randomized gravity, friction, body mass,
and link thickness) and Reacher (with randomized link lengths)"; the paper gives no ranges, so
these are ours): `brax/random_hopper` draws log-uniform ×[0.5, 2] scales of gravity, friction,
each body's mass and each body's thickness; `brax/random_reacher` ×[0.5, 2] lengths of both arm
segments (body0, body1), independently. A thick foot (×2) starts about 2 cm inside the floor
and is pushed out in the first steps; short reacher arms cannot reach the far targets (brax draws
targets within 0.2 m; the arm reaches 0.21 m × its length scale), which leaves "get as close as
possible" a well-defined task.

Tasks (`brax_task`; `register_tasks` lists them lazily):

    names                                   agent                      lifetime steps   α_lr (Adam)
    brax/<env>                (MJX)         D(64, 64), tanh-Gaussian   by env, below    (3e-4, 1e-3, 2.5e-3)
    brax/<env>-<backend>      (other four)
    brax/random_hopper[-<backend>], brax/random_reacher[-<backend>]

Lifetimes: inverted_pendulum, inverted_double_pendulum and reacher 1M (PPO solves the pendulums
and gets close to reacher's asymptote within 1M steps in the standard MuJoCo benchmarks);
hopper, halfcheetah, walker2d and pusher 5M (PPO is still improving at the benchmarks' 1-3M);
ant and humanoid 10M (many more joints, a contact-rich gait to discover). The random families
keep their env's budget (EPG's own inner loops were much shorter: 16k and 65k steps).
Discounts are the registry default.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import warnings
from typing import Any, Callable, Sequence

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from envs import base
from envs import registry
from envs.task import AgentSpec, Task

PREFIX = "brax/"
BACKENDS = ("mjx", "generalized", "positional", "spring")
DEFAULT_BACKEND = "mjx"
AUTO_RESETS = ("fresh", "initial")
# Backends that weigh links by brax's "spring" mass and inertia exponents (`_effective_link_inertia`).
EFFECTIVE_INERTIA_BACKENDS = ("positional", "spring")
DEFAULT_EPISODE_LENGTH = 1000  # brax's `envs.create(episode_length=1000)`

# Which backends run each env on brax 0.14.2 (module docstring: how this was checked).
SUPPORTED_BACKENDS = {
    "ant": BACKENDS,
    "halfcheetah": BACKENDS,
    "hopper": BACKENDS,
    "humanoid": BACKENDS,
    "inverted_pendulum": BACKENDS,
    "inverted_double_pendulum": BACKENDS,
    "pusher": BACKENDS,
    "reacher": BACKENDS,
    "walker2d": BACKENDS,
}
ENV_NAMES = tuple(SUPPORTED_BACKENDS)

LEARNING_RATES = (3e-4, 1e-3, 2.5e-3)
MLP_AGENT = AgentSpec("mlp", hidden=(64, 64), continuous_policy="tanh_gaussian")
_LIFETIME_STEPS = {
    "inverted_pendulum": 1_000_000,
    "inverted_double_pendulum": 1_000_000,
    "reacher": 1_000_000,
    "hopper": 5_000_000,
    "halfcheetah": 5_000_000,
    "walker2d": 5_000_000,
    "pusher": 5_000_000,
    "ant": 10_000_000,
    "humanoid": 10_000_000,
}

# MuJoCo geom types (mujoco.mjtGeom) whose size row is (radius, half-length, -) or (radius, -, -).
_SPHERE, _CAPSULE, _CYLINDER = 2, 3, 5


# ----------------------------------------------------------------------------------- params


@struct.dataclass
class BraxParams:
    """One lifetime's physics, as scales of the env's default System (module docstring).

    mass_scale: float32[L] per body (brax link order, `BraxEnv.body_names`): mass and inertia.
    thickness_scale: float32[L]: radii of the body's capsules/spheres/cylinders, inertia across
      the body's long axis.
    length_scale: float32[L]: positions in the body's frame, capsule/cylinder half-lengths,
      inertia along the long axis.
    friction_scale: float32[]: every geom's friction coefficients.
    gravity_scale: float32[]: the gravity vector.
    max_steps_in_episode: int32[]: the time limit (truncation).
    Per-body scales may also be scalars (broadcast to every body).
    """

    mass_scale: jax.Array
    thickness_scale: jax.Array
    length_scale: jax.Array
    friction_scale: jax.Array
    gravity_scale: jax.Array
    max_steps_in_episode: jax.Array


@dataclasses.dataclass(frozen=True)
class PhysicsRanges:
    """Log-uniform (low, high) ranges of the per-lifetime scales in `BraxParams`; (1, 1) keeps
    a quantity at its default. Per-body scales are drawn independently for each body in
    `bodies` (brax link names; None: every body); the other bodies keep scale 1."""

    mass: tuple[float, float] = (1.0, 1.0)
    thickness: tuple[float, float] = (1.0, 1.0)
    length: tuple[float, float] = (1.0, 1.0)
    friction: tuple[float, float] = (1.0, 1.0)
    gravity: tuple[float, float] = (1.0, 1.0)
    bodies: tuple[str, ...] | None = None

    def __post_init__(self):
        for field in ("mass", "thickness", "length", "friction", "gravity"):
            low, high = getattr(self, field)
            if not 0 < low <= high:
                raise ValueError(f"PhysicsRanges.{field}=({low}, {high}): need 0 < low <= high")


# EPG's families (module docstring); each names the env whose bodies it refers to.
RANDOMIZATIONS = {
    "hopper": ("hopper", PhysicsRanges(mass=(0.5, 2.0), thickness=(0.5, 2.0), friction=(0.5, 2.0),
                                       gravity=(0.5, 2.0))),
    "reacher": ("reacher", PhysicsRanges(length=(0.5, 2.0), bodies=("body0", "body1"))),
}


def _log_uniform(key: jax.Array, low_high: tuple[float, float], shape=()) -> jax.Array:
    low, high = np.log(low_high[0]), np.log(low_high[1])
    return jnp.exp(jax.random.uniform(key, shape, jnp.float32, low, high))


# ------------------------------------------------------------------------------ the System


@dataclasses.dataclass(frozen=True, eq=False)
class _SystemLayout:
    """Static index arrays and reference quantities of one env's System (numpy, [nbody] rows
    include MuJoCo's world body 0; brax's links are bodies 1..L)."""

    body_parent: np.ndarray  # int[nbody]
    geom_body: np.ndarray  # int[G]
    jnt_body: np.ndarray  # int[J]
    dof_body: np.ndarray  # int[V]
    subtree: np.ndarray  # float32[nbody, nbody]: subtree[a, b] = 1 if body b is in a's subtree
    long_axis: np.ndarray  # bool[nbody, 3]: the principal axis with the largest second moment
    second_moments: np.ndarray  # float32[nbody, 3]: S_k = ∫ x_k² dm in the principal frame
    radius_entry: np.ndarray  # bool[G, 3]: geom_size entries that are radii
    half_length_entry: np.ndarray  # bool[G, 3]: geom_size entries that are half-lengths
    geom_type: np.ndarray  # int[G]

    @classmethod
    def of(cls, sys) -> _SystemLayout:
        nbody = int(sys.nbody)
        body_parent = np.asarray(sys.body_parentid)
        subtree = np.eye(nbody, dtype=np.float32)
        for body in range(nbody - 1, 0, -1):  # MuJoCo numbers parents before their children
            subtree[body_parent[body]] += subtree[body]
        inertia = np.asarray(sys.body_inertia, np.float64)  # [nbody, 3] principal moments
        # I_k = Σ_{j≠k} S_j  <=>  S_k = Σ_j I_j / 2 − I_k (clipped: rounding of thin rods).
        moments = np.maximum(inertia.sum(-1, keepdims=True) / 2 - inertia, 0.0)
        long_axis = np.eye(3, dtype=bool)[np.argmax(moments, axis=-1)]
        geom_type = np.asarray(sys.geom_type)
        radius_entry = np.zeros((len(geom_type), 3), bool)
        radius_entry[np.isin(geom_type, (_SPHERE, _CAPSULE, _CYLINDER)), 0] = True
        half_length_entry = np.zeros((len(geom_type), 3), bool)
        half_length_entry[np.isin(geom_type, (_CAPSULE, _CYLINDER)), 1] = True
        return cls(
            body_parent=body_parent,
            geom_body=np.asarray(sys.geom_bodyid),
            jnt_body=np.asarray(sys.jnt_bodyid),
            dof_body=np.asarray(sys.dof_bodyid),
            subtree=subtree,
            long_axis=long_axis,
            second_moments=moments.astype(np.float32),
            radius_entry=radius_entry,
            half_length_entry=half_length_entry,
            geom_type=geom_type,
        )


def _bounding_radius(layout: _SystemLayout, size: jax.Array) -> jax.Array:
    """float32[G] bounding-sphere radius of capsules, spheres and cylinders from geom_size
    [G, 3]; 1 for other geoms (their geom_rbound is left as it is)."""
    radius, half_length = size[:, 0], size[:, 1]
    kind = layout.geom_type
    return jnp.where(
        kind == _CAPSULE, radius + half_length,
        jnp.where(kind == _SPHERE, radius,
                  jnp.where(kind == _CYLINDER, jnp.sqrt(radius**2 + half_length**2), 1.0)))


def _safe_ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator, 1 where the denominator is 0 (massless bodies, planes).
    Computed from identical expressions at default params, so the ratio is then exactly 1."""
    nonzero = denominator != 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1.0), 1.0)


def _effective_link_inertia(sys) -> tuple[jax.Array, jax.Array]:
    """The link masses float32[L] and principal inertias float32[L, 3, 3] that the positional and
    spring pipelines use: m^(1−σ_m) and diag(I)^(1−σ_I), σ being the env's spring_mass_scale and
    spring_inertia_scale (brax computes them this way wherever it reads a mass or inertia)."""
    mass = sys.link.inertia.mass ** (1 - sys.spring_mass_scale)
    moments = jnp.diagonal(sys.link.inertia.i, axis1=-2, axis2=-1) ** (1 - sys.spring_inertia_scale)
    return mass, moments[..., None, :] * jnp.eye(3, dtype=moments.dtype)


def scale_system(sys, layout: _SystemLayout, params: BraxParams, backend: str):
    """The System of one lifetime: `sys` with `params`' scales applied (module docstring table).

    A pure function of arrays (vmaps over params). Every change is a multiplication of the
    reference value, so all-ones params return `sys`'s values bit for bit, except that for the
    positional and spring backends the link masses and inertias are first replaced by the
    effective ones those pipelines use (`_effective_link_inertia`, with σ set to 0: the same
    dynamics), since with σ = 1 (hopper, ant, pusher) a scaled mass would have no effect.
    """
    num_links = sys.nbody - 1

    def per_body(link_scale):  # float32[nbody]: world body unscaled
        link_scale = jnp.broadcast_to(jnp.asarray(link_scale, jnp.float32), (num_links,))
        return jnp.concatenate([jnp.ones((1,), jnp.float32), link_scale])

    mass = per_body(params.mass_scale)
    thickness = per_body(params.thickness_scale)
    length = per_body(params.length_scale)

    # Inertia: stretch the principal second moments, then I_k = Σ_{j≠k} S_j, as ratios.
    moments = layout.second_moments  # [nbody, 3]
    stretch_sq = jnp.where(layout.long_axis, length[:, None] ** 2, thickness[:, None] ** 2)
    stretched = moments * stretch_sq
    shape_ratio = _safe_ratio(stretched.sum(-1, keepdims=True) - stretched,
                              moments.sum(-1, keepdims=True) - moments)
    inertia_scale = mass[:, None] * shape_ratio  # [nbody, 3]

    # Geometry: radii × thickness, half-lengths × length of the geom's body.
    geom_length = length[layout.geom_body]
    size_scale = jnp.where(layout.radius_entry, thickness[layout.geom_body][:, None], 1.0)
    size_scale = jnp.where(layout.half_length_entry, geom_length[:, None], size_scale)
    geom_size = sys.geom_size * size_scale
    rbound_ratio = _safe_ratio(_bounding_radius(layout, geom_size), _bounding_radius(layout, sys.geom_size))
    parent_length = length[layout.body_parent]  # [nbody]: child positions live in the parent frame

    added_mass = sys.body_mass * (mass - 1.0)
    link_mass, link_inertia, spring_scales = sys.link.inertia.mass, sys.link.inertia.i, {}
    if backend in EFFECTIVE_INERTIA_BACKENDS:
        link_mass, link_inertia = _effective_link_inertia(sys)
        spring_scales = dict(spring_mass_scale=jnp.zeros_like(sys.spring_mass_scale),
                             spring_inertia_scale=jnp.zeros_like(sys.spring_inertia_scale))
    link = sys.link
    link = link.replace(
        transform=link.transform.replace(pos=link.transform.pos * parent_length[1:, None]),
        joint=link.joint.replace(pos=link.joint.pos * length[1:, None]),
        inertia=link.inertia.replace(
            transform=link.inertia.transform.replace(pos=link.inertia.transform.pos * length[1:, None]),
            # i is diagonal in the principal frame: scaling its columns scales the moments.
            i=link_inertia * inertia_scale[1:, None, :],
            mass=link_mass * mass[1:],
        ),
        invweight=link.invweight / mass[1:],
    )
    dof_mass = mass[layout.dof_body]
    return sys.replace(
        # mjx.Model fields
        body_mass=sys.body_mass * mass,
        body_subtreemass=sys.body_subtreemass + jnp.asarray(layout.subtree) @ added_mass,
        body_inertia=sys.body_inertia * inertia_scale,
        body_invweight0=sys.body_invweight0 / mass[:, None],
        dof_invweight0=sys.dof_invweight0 / dof_mass,
        body_pos=sys.body_pos * parent_length[:, None],
        body_ipos=sys.body_ipos * length[:, None],
        jnt_pos=sys.jnt_pos * length[layout.jnt_body][:, None],
        geom_pos=sys.geom_pos * geom_length[:, None],
        geom_size=geom_size,
        geom_rbound=sys.geom_rbound * rbound_ratio,
        geom_friction=sys.geom_friction * params.friction_scale,
        opt=sys.opt.replace(gravity=sys.opt.gravity * params.gravity_scale),
        # brax's own fields
        gravity=sys.gravity * params.gravity_scale,
        link=link,
        dof=sys.dof.replace(invweight=sys.dof.invweight / dof_mass),
        **spring_scales,
    )


# ------------------------------------------------------------------------------- brax envs


def _import_brax_envs():
    """brax.envs, imported on first use: it costs ~0.5 s (mujoco.mjx) and prints a warning
    about the optional `warp` package, neither of which `import envs` should pay."""
    from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top

    return brax_envs


@functools.cache
def _scalable_reacher_class():
    """brax's Reacher with the fingertip offset read from the fingertip geom (module docstring)."""
    from brax import base as brax_base  # pylint: disable=g-import-not-at-top
    from brax.envs import reacher  # pylint: disable=g-import-not-at-top

    class ScalableReacher(reacher.Reacher):
        """Reacher whose observation follows `sys.geom_pos` of the fingertip (link lengths)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # brax fuses the jointless fingertip body into body1 (link 1), keeping its geom.
            self._fingertip_geom = self.sys.mj_model.geom("fingertip").id

        def _get_obs(self, pipeline_state):
            """brax's Reacher observation [cos θ, sin θ, target xy, tip velocity xy, tip − target]
            with the fingertip at its geom's position in link 1's frame."""
            tip_offset = brax_base.Transform.create(pos=self.sys.geom_pos[self._fingertip_geom])
            tip_pos = pipeline_state.x.take(1).do(tip_offset).pos
            tip_vel = tip_offset.do(pipeline_state.xd.take(1)).vel
            theta = pipeline_state.q[:2]
            return jnp.concatenate([
                jnp.cos(theta),
                jnp.sin(theta),
                pipeline_state.q[2:],
                tip_vel[:2],
                tip_pos - pipeline_state.x.pos[2],  # the target is link 2
            ])

    return ScalableReacher


def make_brax_env(env_name: str, backend: str = DEFAULT_BACKEND, *, scalable: bool = True, **kwargs):
    """The brax env `env_name` on `backend` (validated; `SUPPORTED_BACKENDS`).

    scalable: Reacher only: the variant whose observation follows link-length scales
      (identical to brax's at default physics); False gives brax's own class.
    **kwargs: the brax env's constructor arguments.
    """
    check_env_and_backend(env_name, backend)
    with warnings.catch_warnings(), _mujoco_warnings_to_python():
        # Known and harmless on every load: brax's notice that its pipelines are unmaintained, and
        # MuJoCo's deprecation of `settotalmass`, which halfcheetah's XML uses.
        warnings.filterwarnings("ignore", message="Brax System, piplines and environments")
        warnings.filterwarnings("ignore", message="MuJoCo: compiler attribute 'settotalmass' is deprecated")
        if env_name == "reacher" and scalable:
            return _scalable_reacher_class()(backend=backend, **kwargs)
        return _import_brax_envs().get_environment(env_name, backend=backend, **kwargs)


@contextlib.contextmanager
def _mujoco_warnings_to_python():
    """Routes MuJoCo's C-level warnings to Python's `warnings` while the block runs: by default
    MuJoCo appends them to MUJOCO_LOG.TXT in the working directory."""
    import mujoco  # pylint: disable=g-import-not-at-top

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda message: warnings.warn(f"MuJoCo: {message}", RuntimeWarning))
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def check_env_and_backend(env_name: str, backend: str) -> None:
    """ValueError naming the bad value and the allowed ones."""
    if env_name not in SUPPORTED_BACKENDS:
        raise ValueError(f"unknown brax env {env_name!r}; brax envs: {', '.join(ENV_NAMES)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown brax backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend not in SUPPORTED_BACKENDS[env_name]:
        allowed = ", ".join(SUPPORTED_BACKENDS[env_name])
        raise ValueError(f"brax env {env_name!r} does not run on backend {backend!r}; its backends: {allowed}")


# ------------------------------------------------------------------------------ the wrapper


@struct.dataclass
class BraxState(base.EnvState):
    """time: int32[], steps taken in the current episode (gymnax's field).
    physics: the brax env's `State` (pipeline state, obs, reward, done, metrics).
    initial: the brax `State` the env's first `reset` drew, for `auto_reset="initial"` (None
      otherwise).
    """

    physics: Any
    initial: Any = None


def _terminated(physics) -> jax.Array:
    """bool[]: brax's `done`, or a non-finite observation or reward (see the module docstring)."""
    finite = jnp.all(jnp.isfinite(physics.obs)) & jnp.isfinite(physics.reward)
    return (physics.done > 0.5) | ~finite


def _strong(tree):
    """`tree` with weak float types made strong: brax returns weakly typed floats from some
    steps (hopper's `done`), which would change the carry type of a `lax.scan`."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), tree)


class BraxEnv(base.Environment):
    """A brax environment behind this project's interface (module docstring has the details).

    Unbatched; observations float32[obs_dim], rewards float32[], flags bool[]; actions
    float32[action_size] in `action_space()` (brax clips them to the actuators' control range).

    Args:
      env_name: one of `ENV_NAMES`.
      backend: "mjx" (default), "generalized", "positional" or "spring" (`SUPPORTED_BACKENDS`).
      randomization: per-lifetime physics ranges for `sample_params` (None: default physics).
      auto_reset: "fresh" (default: a new `reset` when an episode ends) or "initial" (restart
        from the state of the first `reset`, brax's AutoResetWrapper).
      **brax_kwargs: constructor arguments of the brax env (e.g. `ctrl_cost_weight`).
    """

    def __init__(
        self,
        env_name: str,
        backend: str = DEFAULT_BACKEND,
        *,
        randomization: PhysicsRanges | None = None,
        auto_reset: str = "fresh",
        **brax_kwargs,
    ):
        super().__init__()
        if auto_reset not in AUTO_RESETS:
            raise ValueError(f"auto_reset={auto_reset!r}; allowed: {', '.join(AUTO_RESETS)}")
        self.env_name = env_name
        self.backend = backend
        self.auto_reset = auto_reset
        self.unwrapped = make_brax_env(env_name, backend, **brax_kwargs)
        self.sys = self.unwrapped.sys
        self.layout = _SystemLayout.of(self.sys)
        self.body_names = tuple(self.sys.link_names)
        self.randomization = randomization
        if randomization is not None and randomization.bodies is not None:
            unknown = set(randomization.bodies) - set(self.body_names)
            if unknown:
                raise ValueError(f"PhysicsRanges.bodies {sorted(unknown)} are not bodies of {env_name}; "
                                 f"its bodies: {self.body_names}")
        ctrl_range = np.asarray(self.sys.actuator.ctrl_range, np.float32)  # [A, 2]
        self._action_low, self._action_high = ctrl_range[:, 0], ctrl_range[:, 1]

    @property
    def num_links(self) -> int:
        """L, the number of bodies (brax links) and the length of the per-body scales."""
        return len(self.body_names)

    def scaled_system(self, params: BraxParams):
        """The brax System of the lifetime with physics `params` (`scale_system`)."""
        return scale_system(self.sys, self.layout, params, self.backend)

    def physics_env(self, params: BraxParams):
        """The brax env running on the lifetime's System: a shallow copy whose `sys` is
        `scaled_system(params)`, so brax's own methods (`reset`, `step`, `pipeline_init`, which
        read `self.sys`) see the lifetime's physics, traced values included."""
        env = copy.copy(self.unwrapped)
        env.sys = self.scaled_system(params)
        return env

    # ------------------------------------------------------------------------------ dynamics

    def reset(self, key: jax.Array, params: BraxParams | None = None) -> tuple[jax.Array, BraxState]:
        return self.reset_env(key, self.default_params if params is None else params)

    def reset_env(self, key: jax.Array, params: BraxParams) -> tuple[jax.Array, BraxState]:
        physics = _strong(self.physics_env(params).reset(key))
        initial = physics if self.auto_reset == "initial" else None
        return physics.obs, BraxState(time=jnp.zeros((), jnp.int32), physics=physics, initial=initial)

    def step_env(self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams):
        """The transition without auto-reset: (obs, state, reward, terminated, info)."""
        del key  # brax's dynamics are deterministic
        # brax's envs update `state.metrics` in place: hand them a copy, never the caller's dict.
        physics = state.physics.replace(done=jnp.zeros_like(state.physics.done),
                                        metrics=dict(state.physics.metrics))
        physics = _strong(self.physics_env(params).step(physics, jnp.asarray(action, jnp.float32)))
        next_state = state.replace(time=state.time + 1, physics=physics)
        return physics.obs, next_state, physics.reward, _terminated(physics), {"metrics": physics.metrics}

    def step(self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams | None = None):
        """One step with auto-reset: (obs, state, reward, terminated, truncated, info), where
        `info["final_observation"]` is the last observation of an episode that just ended and
        `info["metrics"]` brax's reward terms of the transition."""
        params = self.default_params if params is None else params
        obs, next_state, reward, terminated, info = self.step_env(key, state, action, params)
        truncated = self.is_truncated(next_state, params)
        done = terminated | truncated
        if self.auto_reset == "fresh":
            reset_obs, reset_state = self.reset_env(key, params)
        else:
            reset_obs = state.initial.obs
            reset_state = next_state.replace(time=jnp.zeros_like(next_state.time), physics=state.initial)
        new_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, next_state)
        info.update(final_observation=obs, terminated=terminated, truncated=truncated)
        return jnp.where(done, reset_obs, obs), new_state, reward, terminated, truncated, info

    def is_terminated(self, state: BraxState, params: BraxParams) -> jax.Array:
        del params
        return _terminated(state.physics)

    def is_truncated(self, state: BraxState, params: BraxParams) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    def get_obs(self, state: BraxState, params=None, key=None) -> jax.Array:
        del params, key
        return state.physics.obs

    def sample_params(self, key: jax.Array) -> BraxParams:
        """Physics of one lifetime: log-uniform scales in `randomization`'s ranges (defaults
        without one)."""
        params = self.default_params
        ranges = self.randomization
        if ranges is None:
            return params
        keys = dict(zip(("mass", "thickness", "length", "friction", "gravity"), jax.random.split(key, 5)))
        randomized = np.ones((self.num_links,), bool)
        if ranges.bodies is not None:
            randomized = np.isin(np.array(self.body_names), ranges.bodies)

        def per_body(field):
            scales = _log_uniform(keys[field], getattr(ranges, field), (self.num_links,))
            return jnp.where(randomized, scales, 1.0)

        return params.replace(
            mass_scale=per_body("mass"),
            thickness_scale=per_body("thickness"),
            length_scale=per_body("length"),
            friction_scale=_log_uniform(keys["friction"], ranges.friction),
            gravity_scale=_log_uniform(keys["gravity"], ranges.gravity),
        )

    # ------------------------------------------------------------------------------ interface

    @property
    def default_params(self) -> BraxParams:
        ones = jnp.ones((self.num_links,), jnp.float32)
        return BraxParams(
            mass_scale=ones,
            thickness_scale=ones,
            length_scale=ones,
            friction_scale=jnp.ones((), jnp.float32),
            gravity_scale=jnp.ones((), jnp.float32),
            max_steps_in_episode=jnp.asarray(DEFAULT_EPISODE_LENGTH, jnp.int32),
        )

    @property
    def name(self) -> str:
        return f"{self.env_name}-{self.backend}"

    @property
    def num_actions(self) -> int:
        """The action dimension D (gymnax's convention for Box action spaces, e.g. Pendulum's 1)."""
        return int(self._action_low.shape[0])

    @functools.cached_property
    def _obs_size(self) -> int:
        # Traced, not run: brax's own `observation_size` runs a reset op by op.
        return int(jax.eval_shape(self.unwrapped.reset, jax.random.key(0)).obs.shape[-1])

    def action_space(self, params=None) -> base.Box:
        """float32[D] in the actuators' control range (brax's `sys.actuator.ctrl_range`)."""
        del params
        return base.Box(self._action_low, self._action_high, (self.num_actions,), jnp.float32)

    def observation_space(self, params=None) -> base.Box:
        del params
        return base.Box(-jnp.inf, jnp.inf, (self._obs_size,), jnp.float32)


# ---------------------------------------------------------------------------------- tasks


def task_name(env_name: str, backend: str = DEFAULT_BACKEND, randomize: str | None = None) -> str:
    """"brax/hopper" (MJX), "brax/hopper-positional", "brax/random_hopper-spring", ..."""
    stem = env_name if randomize is None else f"random_{randomize}"
    return PREFIX + stem + ("" if backend == DEFAULT_BACKEND else f"-{backend}")


def brax_task(
    env_name: str,
    *,
    backend: str = DEFAULT_BACKEND,
    randomize: str | PhysicsRanges | None = None,
    name: str | None = None,
    auto_reset: str = "fresh",
    env_kwargs: dict | None = None,
    agent: AgentSpec | None = None,
    lifetime_steps: int | None = None,
    learning_rates: Sequence[float] | None = None,
    discounts: Sequence[float] = registry.DISCOUNTS,
) -> Task:
    """A task on the brax env `env_name` (module docstring: defaults and why).

    randomize: None (default physics), "hopper" / "reacher" (EPG's families, `RANDOMIZATIONS`,
      only on their own env) or any `PhysicsRanges`.
    name: registry name, default `task_name(env_name, backend, randomize)`.
    env_kwargs: constructor arguments of the brax env.
    """
    family = None
    if isinstance(randomize, str):
        if randomize not in RANDOMIZATIONS:
            raise ValueError(f"randomize={randomize!r}; allowed: None, a PhysicsRanges, "
                             f"{', '.join(RANDOMIZATIONS)}")
        family_env, ranges = RANDOMIZATIONS[randomize]
        if env_name != family_env:
            raise ValueError(f"randomize={randomize!r} refers to {family_env}'s bodies, not {env_name!r}'s")
        family = randomize
    else:
        ranges = randomize
    env = BraxEnv(env_name, backend, randomization=ranges, auto_reset=auto_reset, **(env_kwargs or {}))
    return Task(
        name=task_name(env_name, backend, family) if name is None else name,
        env=env,
        sample_params=env.sample_params,
        lifetime_steps=_LIFETIME_STEPS[env_name] if lifetime_steps is None else lifetime_steps,
        agent=MLP_AGENT if agent is None else agent,
        learning_rates=tuple(LEARNING_RATES if learning_rates is None else learning_rates),
        discounts=tuple(discounts),
    )


def registered_tasks() -> dict[str, Callable[[], Task]]:
    """Every brax task name and its builder: "brax/<env>" (MJX) and "brax/<env>-<backend>" per
    other supported backend, then EPG's families the same way."""
    builders = {}
    for env_name in ENV_NAMES:
        for backend in SUPPORTED_BACKENDS[env_name]:
            builders[task_name(env_name, backend)] = functools.partial(brax_task, env_name, backend=backend)
    for family, (env_name, _) in RANDOMIZATIONS.items():
        for backend in SUPPORTED_BACKENDS[env_name]:
            builders[task_name(env_name, backend, family)] = functools.partial(
                brax_task, env_name, backend=backend, randomize=family)
    return builders


def register_tasks() -> None:
    """Registers every `registered_tasks` name, built on first `make` (brax imported then)."""
    for name, build in registered_tasks().items():
        registry.register_lazy(name, build)


def parse_task_name(name: str) -> tuple[str, str, str | None]:
    """(env_name, backend, randomize) of a registered brax task name."""
    stem = name[len(PREFIX):] if name.startswith(PREFIX) else name
    stem, _, backend = stem.partition("-")
    backend = backend or DEFAULT_BACKEND
    if stem.startswith("random_") and stem[len("random_"):] in RANDOMIZATIONS:
        family = stem[len("random_"):]
        return RANDOMIZATIONS[family][0], backend, family
    return stem, backend, None


# ------------------------------------------------------------------------------ benchmark


def raw_vs_wrapped_step_fns(
    name: str, num_envs: int, num_steps: int = 1000, auto_reset: str = "fresh"
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """Jitted `rollout(key) -> float32[2]` (total reward, sum of every observation) for raw brax
    and for `BraxEnv`. The observation sum makes the result depend on the physics: with a
    reward that does not (inverted_pendulum's constant 1 per step) XLA would otherwise delete
    the simulation and a benchmark would time an empty loop.

    The raw rollout steps brax's env in its standard training stack (EpisodeWrapper with
    1000-step episodes, AutoResetWrapper: restarts from the initial state), the wrapped one
    `BraxEnv` (default physics params, `auto_reset` as given); each resets `num_envs` envs and
    runs `num_steps` batched steps in one `lax.scan` with the same keys and uniformly random
    actions in the action space. Until an episode ends the two compute the same rollout.

    Returns:
      (raw_rollout, wrapped_rollout).
    """
    env_name, backend, _ = parse_task_name(name)
    wrapped = BraxEnv(env_name, backend, auto_reset=auto_reset)
    brax_envs = _import_brax_envs()
    raw = brax_envs.training.AutoResetWrapper(brax_envs.training.EpisodeWrapper(
        make_brax_env(env_name, backend, scalable=False), DEFAULT_EPISODE_LENGTH, action_repeat=1))
    params = wrapped.default_params
    action_space = wrapped.action_space()

    def raw_reset(key):
        return raw.reset(key)

    def raw_step(key, state, action):
        del key
        state = raw.step(state, action)
        return state, state.reward, state.obs

    def wrapped_reset(key):
        return wrapped.reset(key, params)[1]

    def wrapped_step(key, state, action):
        obs, state, reward, _, _, _ = wrapped.step(key, state, action, params)
        return state, reward, obs

    def make_rollout(reset_fn, step_fn):
        batched_step = jax.vmap(step_fn)

        def rollout(key):
            key_reset, key_run = jax.random.split(key)
            states = jax.vmap(reset_fn)(jax.random.split(key_reset, num_envs))

            def one_step(carry, step_key):
                states, total = carry
                key_action, key_step = jax.random.split(step_key)
                actions = jax.vmap(action_space.sample)(jax.random.split(key_action, num_envs))
                states, reward, obs = batched_step(jax.random.split(key_step, num_envs), states, actions)
                return (states, total + jnp.stack([reward.sum(), obs.sum()])), None

            carry = (states, jnp.zeros((2,), jnp.float32))
            (_, total), _ = jax.lax.scan(one_step, carry, jax.random.split(key_run, num_steps))
            return total

        return jax.jit(rollout)

    return make_rollout(raw_reset, raw_step), make_rollout(wrapped_reset, wrapped_step)
