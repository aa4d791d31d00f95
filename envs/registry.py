"""The task registry: the paper's 15 training tasks (SPEC §2, LPG appendix A, Table 3) and builders.

    task = envs.make("tabular/dense")
    params = task.sample_params(key)              # one lifetime's environment
    obs, state = task.env.reset(key, params)

Users define new tasks in a few lines and register them:

    envs.register(envs.gridworld_task("my/grid", height=6, width=6,
                                      objects=[(1.0, 0.0, 0.05)] * 2 + [(-1.0, 0.5, 0.1)],
                                      max_steps=200, mode="tabular"))

Builders validate everything at construction (ValueError naming the bad value and what is allowed)
and fill in the paper's defaults for the agent, learning rates and lifetime length by family.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from envs import chain
from envs import gridworld
from envs.task import AgentSpec, Task

DISCOUNTS = (0.997, 0.995, 0.99)  # SPEC Table 2
TABULAR_LEARNING_RATES = (20.0, 40.0, 80.0)
NETWORK_LEARNING_RATES = (5e-4, 1e-3, 2e-3, 5e-3)
DISTRACTOR_LEARNING_RATES = (2e-3, 5e-3, 1e-2)
TABULAR_AGENT = AgentSpec("tabular", optimiser="sgd")

_LIFETIME_STEPS = {"tabular": 3_000_000, "random": 30_000_000, "chain": 1_000_000, "distractor": 2_000_000}

# A value is a Task, or a zero-argument builder of one (`register_lazy`) until the first `make`.
_REGISTRY: dict[str, Task | Callable[[], Task]] = {}


def register(task: Task, overwrite: bool = False) -> Task:
    """Adds `task` under `task.name`; re-registering a name needs `overwrite=True`. Returns task."""
    if not isinstance(task, Task):
        raise ValueError(f"register expects an envs.task.Task, got {type(task).__name__}")
    if task.name in _REGISTRY and not overwrite:
        raise ValueError(f"task {task.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[task.name] = task
    return task


def register_lazy(name: str, build_fn: Callable[[], Task], overwrite: bool = False) -> None:
    """Lists `name` now and builds its task with `build_fn()` on the first `make(name)`.

    For tasks that are costly to construct (envs.wrappers.gymnax registers every gymnax env this
    way; MNISTBandit downloads its data when built).
    """
    _check_name(name)
    if not callable(build_fn):
        raise ValueError(f"register_lazy expects a callable returning a Task, got {type(build_fn).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"task {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = build_fn


def make(name: str) -> Task:
    """The registered task called `name` (e.g. "tabular/dense"); lazy tasks are built once."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(names())}")
    entry = _REGISTRY[name]
    if not isinstance(entry, Task):
        entry = entry()
        if not isinstance(entry, Task) or entry.name != name:
            raise ValueError(f"the builder registered for {name!r} returned {entry!r}, not a Task named {name!r}")
        _REGISTRY[name] = entry
    return entry


def names() -> list[str]:
    """Registered task names, in registration order."""
    return list(_REGISTRY)


def _check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty string, got {name!r}")


def gridworld_task(
    name: str,
    *,
    height: int,
    width: int,
    objects: Sequence[Sequence[float]],
    max_steps: int,
    mode: str = "tabular",
    walls=None,
    collect_action_prob: float = 0.5,
    agent: AgentSpec | None = None,
    lifetime_steps: int | None = None,
    learning_rates: Sequence[float] | None = None,
    discounts: Sequence[float] = DISCOUNTS,
) -> Task:
    """A grid-world task (envs.gridworld has the dynamics).

    objects: [r, ε_term, ε_respawn] per object. walls: None, bool[H, W] or (row, col) pairs.
    collect_action_prob: probability that a lifetime gets the 18-action space (paper: 1/2).
    Defaults by mode: tabular -> table agent with SGD, α_lr ∈ (20, 40, 80), 3M steps;
    random -> C(16)-D(32) with Adam, α_lr ∈ (5e-4, 1e-3, 2e-3, 5e-3), 30M steps.
    """
    _check_name(name)
    if not 0.0 <= collect_action_prob <= 1.0:
        raise ValueError(f"collect_action_prob={collect_action_prob} must lie in [0, 1]")
    env = gridworld.GridWorld(height, width, objects, max_steps, mode=mode, walls=walls)
    if agent is None:
        agent = TABULAR_AGENT if mode == "tabular" else AgentSpec("conv", conv_features=(16,), hidden=(32,))
    if learning_rates is None:
        learning_rates = TABULAR_LEARNING_RATES if agent.kind == "tabular" else NETWORK_LEARNING_RATES
    if agent.kind == "tabular" and mode != "tabular":
        raise ValueError(f"agent kind 'tabular' needs mode='tabular' observations, got mode={mode!r}")
    return Task(
        name=name,
        env=env,
        sample_params=functools.partial(env.sample_params, collect_action_prob=collect_action_prob),
        lifetime_steps=_LIFETIME_STEPS[mode] if lifetime_steps is None else lifetime_steps,
        agent=agent,
        learning_rates=tuple(learning_rates),
        discounts=tuple(discounts),
    )


def chain_task(
    name: str,
    *,
    min_length: int = 5,
    max_length: int = 30,
    noisy: bool = False,
    distractor: bool = False,
    agent: AgentSpec | None = None,
    lifetime_steps: int | None = None,
    learning_rates: Sequence[float] | None = None,
    discounts: Sequence[float] = DISCOUNTS,
) -> Task:
    """A delayed-chain task (envs.chain has the dynamics); L ~ U[min_length, max_length] per lifetime.

    Defaults: tabular chain -> table agent with SGD, α_lr ∈ (20, 40, 80), 1M steps;
    distractor -> D(16) with Adam, α_lr ∈ (2e-3, 5e-3, 1e-2), 2M steps.
    """
    _check_name(name)
    env = chain.DelayedChain(min_length=min_length, max_length=max_length, noisy=noisy, distractor=distractor)
    if agent is None:
        agent = AgentSpec("mlp", hidden=(16,)) if distractor else TABULAR_AGENT
    if learning_rates is None:
        learning_rates = DISTRACTOR_LEARNING_RATES if distractor else TABULAR_LEARNING_RATES
    if agent.kind == "tabular" and distractor:
        raise ValueError("agent kind 'tabular' needs tabular observations, got distractor=True")
    if lifetime_steps is None:
        lifetime_steps = _LIFETIME_STEPS["distractor" if distractor else "chain"]
    return Task(
        name=name,
        env=env,
        sample_params=env.sample_params,
        lifetime_steps=lifetime_steps,
        agent=agent,
        learning_rates=tuple(learning_rates),
        discounts=tuple(discounts),
    )


# --------------------------------------------------------------------------------- builtins
# SPEC §2 tables, verbatim. Sizes are (rows, columns) as written in the paper.
_DENSE_OBJECTS = [(1.0, 0.0, 0.05)] * 2 + [(-1.0, 0.5, 0.1), (-1.0, 0.0, 0.5)]
_LONG_HORIZON_OBJECTS = [(1.0, 0.0, 0.01)] * 2 + [(-1.0, 0.5, 1.0)] * 2

_TABULAR_GRIDS = {
    "dense": dict(height=11, width=11, objects=_DENSE_OBJECTS, max_steps=500),
    "sparse": dict(height=13, width=13, objects=[(1.0, 1.0, 0.0), (-1.0, 1.0, 0.0)], max_steps=50),
    "long_horizon": dict(height=11, width=11, objects=_LONG_HORIZON_OBJECTS, max_steps=1000),
    "longer_horizon": dict(
        height=7, width=9, objects=[(1.0, 0.1, 0.01)] * 2 + [(-1.0, 0.8, 1.0)] * 5, max_steps=2000
    ),
    "long_dense": dict(height=11, width=11, objects=[(1.0, 0.0, 0.005)] * 4, max_steps=2000),
}

_SMALL_NET = AgentSpec("conv", conv_features=(16,), hidden=(32,))
_RANDOM_GRIDS = {
    "dense": dict(height=11, width=11, objects=_DENSE_OBJECTS, max_steps=500, agent=_SMALL_NET),
    "long_horizon": dict(height=11, width=11, objects=_LONG_HORIZON_OBJECTS, max_steps=1000, agent=_SMALL_NET),
    "small": dict(
        height=5,
        width=7,
        objects=[(1.0, 0.0, 0.05)] * 2 + [(-1.0, 0.5, 0.1)] * 2,
        max_steps=500,
        agent=AgentSpec("mlp", hidden=(32,)),
    ),
    "small_sparse": dict(
        height=5,
        width=7,
        objects=[(1.0, 1.0, 1.0)] + [(-1.0, 1.0, 1.0)] * 2,
        max_steps=50,
        agent=AgentSpec("mlp", hidden=(32,)),
    ),
    "very_dense": dict(
        height=11,
        width=11,
        objects=[(1.0, 0.0, 1.0)],
        max_steps=2000,
        agent=AgentSpec("conv", conv_features=(32, 16, 16), hidden=(256,)),
    ),
}

_CHAINS = {
    "short": dict(min_length=5, max_length=30),
    "short_noisy": dict(min_length=5, max_length=30, noisy=True),
    "long": dict(min_length=5, max_length=50),
    "long_noisy": dict(min_length=5, max_length=50, noisy=True),
    "distractor": dict(min_length=5, max_length=30, distractor=True),
}


# The paper's 15 training tasks (SPEC §2), in registration order: what "all" means to the
# launchers. Adapter families (gymnax/, brax/, ...) are registered after them and are not in it.
PAPER_TASKS = (*(f"tabular/{v}" for v in _TABULAR_GRIDS), *(f"random/{v}" for v in _RANDOM_GRIDS),
               *(f"chain/{v}" for v in _CHAINS))


def _register_builtins() -> None:
    for variant, config in _TABULAR_GRIDS.items():
        register(gridworld_task(f"tabular/{variant}", mode="tabular", **config))
    for variant, config in _RANDOM_GRIDS.items():
        register(gridworld_task(f"random/{variant}", mode="random", **config))
    for variant, config in _CHAINS.items():
        register(chain_task(f"chain/{variant}", **config))


_register_builtins()
