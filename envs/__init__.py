"""Pure-JAX training environments of LPG (SPEC §2) behind a gymnax-compatible interface.

    import envs
    task = envs.make("tabular/dense")        # or envs.names() for all 15 builtins
    task = envs.make("gymnax/CartPole-v1")   # every gymnax env, built on first make
    task = envs.make("brax/hopper-positional")  # brax envs per physics backend, built on first make
    params = task.sample_params(key)          # per-lifetime EnvParams
    obs, state = task.env.reset(key, params)

`envs.gridworld_task` / `envs.chain_task` build new tasks; `envs.register` adds them.
"""

from envs.chain import DelayedChain
from envs.gridworld import GridWorld
from envs.registry import chain_task, gridworld_task, make, names, register, register_lazy
from envs.task import AgentSpec, Task
from envs.wrappers import brax as _brax
from envs.wrappers import gymnax as _gymnax

_gymnax.register_tasks()  # "gymnax/<id>" for every gymnax env, built on first make
_brax.register_tasks()  # "brax/<env>[-<backend>]" and EPG's random_hopper/random_reacher; built on first make

__all__ = [
    "AgentSpec",
    "DelayedChain",
    "GridWorld",
    "Task",
    "chain_task",
    "gridworld_task",
    "make",
    "names",
    "register",
    "register_lazy",
]
