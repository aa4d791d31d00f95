"""Turns an experiment config into library objects, validating every value first.

The only place that reads an LPG experiment config: library components get explicit arguments.
"""

from __future__ import annotations

import ml_collections

import envs
from lpg import agent as agent_lib
from lpg import training
from lpg.meta import objective as objective_lib
from lpg.meta import population
from lpg.meta import sharding
from lpg.meta import trainer as trainer_lib
from lpg.rules import lpg as lpg_rule


def parse_tasks(names: str) -> tuple[str, ...]:
    """'a,b' → ('a', 'b'), each checked against the registry (its error lists valid names)."""
    tasks = tuple(n.strip() for n in str(names).split(",") if n.strip())
    if not tasks:
        raise ValueError(f"no tasks given ({names!r}); choose from {envs.names()}")
    for name in tasks:
        envs.make(name)
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks listed twice in {names!r}")
    return tasks


def _positive(section: str, config, *names):
    for name in names:
        value = config[name]
        if not value > 0:
            raise ValueError(f"config.{section}.{name} must be > 0, got {value!r}")


def make_rule(rule_config: ml_collections.ConfigDict) -> lpg_rule.LPG:
    _positive("rule", rule_config, "hidden_size", "y_dim")
    # Rules saved before matmul_dtype existed were float32.
    matmul_dtype = str(rule_config.get("matmul_dtype", "float32"))
    if matmul_dtype not in lpg_rule.MATMUL_DTYPES:
        raise ValueError(f"config.rule.matmul_dtype must be one of {lpg_rule.MATMUL_DTYPES}, got {matmul_dtype!r}")
    return lpg_rule.LPG(
        hidden_size=int(rule_config.hidden_size), y_dim=int(rule_config.y_dim),
        y_softmax=bool(rule_config.y_softmax), matmul_dtype=matmul_dtype)


def make_trainer(config: ml_collections.ConfigDict, mesh=None) -> trainer_lib.MetaTrainer:
    """Builds the MetaTrainer of an LPG config (raises ValueError naming any bad value).

    mesh: the population mesh (lpg.meta.sharding.population_mesh()); None: the default device.
    """
    meta = config.meta
    _positive("meta", meta, "critic_learning_rate", "critic_learning_rate_tabular",
              "lifetimes_per_task", "num_envs", "unroll_length", "num_updates", "lifetime_scale",
              "steps", "learning_rate", "max_grad_norm")
    if meta.agent_grad_clip < 0:
        raise ValueError(f"config.meta.agent_grad_clip must be >= 0 (0 disables), got {meta.agent_grad_clip}")
    tasks = parse_tasks(meta.tasks)
    # The trainer checks this too (and remat, chunk >= 0); here the message names the config keys.
    num_devices = 1 if mesh is None else mesh.size
    try:
        sharding.check_divisible({name: int(meta.lifetimes_per_task) for name in tasks},
                                 num_devices, int(meta.lifetimes_per_chunk))
    except ValueError as err:
        raise ValueError(f"config.meta.lifetimes_per_task={meta.lifetimes_per_task} / "
                         f"lifetimes_per_chunk={meta.lifetimes_per_chunk} on {num_devices} "
                         f"device(s): {err}") from None
    rule = make_rule(config.rule)
    grad_clip = float(meta.agent_grad_clip) or None
    groups = []
    for name in tasks:
        task = envs.make(name)
        agent = training.build_agent(task, y_dim=rule.y_dim, grad_clip=grad_clip)
        groups.append(population.GroupSpec(
            task=task,
            agent=agent,
            # Adam for every critic: see objective.critic_update for why not the agent's SGD.
            critic=agent_lib.Agent(network=agent.network, optimiser="adam"),
            critic_learning_rate=float(
                meta.critic_learning_rate_tabular if task.agent.kind == "tabular"
                else meta.critic_learning_rate),
            num_lifetimes=int(meta.lifetimes_per_task),
            num_envs=int(meta.num_envs),
            lifetime_steps=max(1, int(task.lifetime_steps * meta.lifetime_scale)),
            entropy_costs=tuple(float(b) for b in meta.entropy_costs),
            td_lambda=float(meta.td_lambda),
        ))
    return trainer_lib.MetaTrainer(
        rule=rule,
        groups=tuple(groups),
        objective=objective_lib.MetaObjective(
            y_entropy_cost=float(config.objective.y_entropy_cost),
            pi_hat_l2_cost=float(config.objective.pi_hat_l2_cost),
            y_hat_l2_cost=float(config.objective.y_hat_l2_cost),
            y_softmax=rule.y_softmax,
        ),
        num_updates=int(meta.num_updates),
        unroll_length=int(meta.unroll_length),
        meta_learning_rate=float(meta.learning_rate),
        max_meta_grad_norm=float(meta.max_grad_norm),
        bandit=population.BanditConfig(
            temperature=float(config.bandit.temperature), bonus=float(config.bandit.bonus),
            window=int(config.bandit.window), enabled=bool(config.bandit.enabled)),
        entropy_floor=float(meta.entropy_floor),
        remat=str(meta.remat),
        lifetimes_per_chunk=int(meta.lifetimes_per_chunk),
        mesh=mesh,
    )
