"""Turns an EPG experiment config (experiments/configs/epg.py) into its ES meta-trainer.

`launch.build.make_trainer` / `validate_config` dispatch here on `config.method == "epg"`, so the
launcher (launch/train.py), checkpoints, resume and `launch.evaluate --checkpoint` are shared with
LPG. `validate_config` checks every value (cheap, no jax work) before anything is built.
"""

from __future__ import annotations

import dataclasses

import ml_collections

import envs
from launch import build
from lpg import agent as agent_lib
from lpg import training
from lpg.meta import es as es_lib
from lpg.meta import population
from lpg.rules import epg as epg_rule

RULE_INTS = ("buffer_length", "conv1_kernel", "conv1_stride", "conv1_channels", "conv2_kernel",
             "conv2_stride", "conv2_channels", "context_size", "hidden_size", "memory_size",
             "epochs", "minibatches")
RULE_BOOLS = ("use_reward",)
CONFIG_RANGES = {
    "meta.num_envs": build.COUNT,
    "meta.unroll_length": build.COUNT,
    "meta.lifetime_steps": build.COUNT,
    "meta.td_lambda": build.Range(low=0, high=1),
    "meta.steps": build.COUNT,
    "meta.lifetimes_per_chunk": build.Range(low=0, integer=True),
    "rule.max_grad_norm": build.NON_NEGATIVE,
    "log_every": build.COUNT,
    "checkpoint_every": build.COUNT,
    "keep_checkpoints": build.COUNT,
    "seed": build.INTEGER,
}
CONFIG_LIST_RANGES = {
    "meta.learning_rates": build.POSITIVE,
    "meta.discounts": build.Range(low=0, high=1, low_open=True),
    "meta.entropy_costs": build.NON_NEGATIVE,
}


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raises ValueError naming the first bad value of an EPG config and what is allowed."""
    for name in RULE_INTS:
        build.check_range(f"rule.{name}", build._lookup(config, f"rule.{name}"), build.COUNT)
    for name in RULE_BOOLS:
        value = build._lookup(config, f"rule.{name}")
        if not isinstance(value, bool):
            raise ValueError(f"config.rule.{name} must be True or False, got {value!r}")
    activation = build._lookup(config, "rule.activation")
    if activation not in epg_rule.ACTIVATIONS:
        raise ValueError(f"config.rule.activation must be one of {sorted(epg_rule.ACTIVATIONS)}, got {activation!r}")
    for key, allowed in CONFIG_RANGES.items():
        build.check_range(key, build._lookup(config, key), allowed)
    for key, allowed in CONFIG_LIST_RANGES.items():
        build.check_list_range(key, build._lookup(config, key), allowed)
    if build.estimator_of(config) != "es":
        raise ValueError(f"config.meta.estimator must be 'es' for EPG (its outer loop), got "
                         f"{config.meta.estimator!r}")
    build._validate_es(config)
    build._parse_tasks_of(config, "meta.tasks")
    build._parse_tasks_of(config, "eval.tasks")
    meta = config.meta
    if meta.num_envs % config.rule.minibatches:
        raise ValueError(f"config.rule.minibatches={config.rule.minibatches} must divide "
                         f"config.meta.num_envs={meta.num_envs}")
    if meta.lifetime_steps < meta.num_envs * meta.unroll_length:
        raise ValueError(f"config.meta.lifetime_steps={meta.lifetime_steps} is shorter than one update "
                         f"of num_envs × unroll_length = {meta.num_envs * meta.unroll_length} steps")
    try:
        build.sharding.check_divisible({"population": meta.es.population}, num_devices,
                                       meta.lifetimes_per_chunk)
    except ValueError as err:
        raise ValueError(f"config.meta.es.population={meta.es.population} / lifetimes_per_chunk="
                         f"{meta.lifetimes_per_chunk} on {num_devices} device(s): {err}") from None


def rule_config(config) -> dict:
    """EPG's static fields from config.rule (the environment shapes come from the task)."""
    fields = {name: int(config.rule[name]) for name in RULE_INTS}
    fields.update(use_reward=bool(config.rule.use_reward), activation=str(config.rule.activation),
                  max_grad_norm=float(config.rule.max_grad_norm))
    return fields


def make_trainer(config: ml_collections.ConfigDict, mesh=None) -> es_lib.ESTrainer:
    """The ES meta-trainer of an EPG config (first `validate_config`). All meta.tasks must share
    observation and action shapes (one φ reads them all)."""
    validate_config(config, 1 if mesh is None else mesh.size)
    meta = config.meta
    tasks = [envs.make(name) for name in build.parse_tasks(meta.tasks)]
    learning_rates = tuple(float(x) for x in meta.learning_rates)
    discounts = tuple(float(x) for x in meta.discounts)
    num_envs = int(meta.num_envs)
    try:
        rules = [epg_rule.EPG.for_task(task, num_envs, **rule_config(config)) for task in tasks]
    except ValueError as err:
        raise ValueError(f"config.rule: {err}") from None
    rule = rules[0]
    for task, other in zip(tasks, rules):
        if other != rule:
            raise ValueError(f"config.meta.tasks: {task.name} has observation/action sizes "
                             f"({other.obs_size}, {other.action_size}) unlike {tasks[0].name}'s "
                             f"({rule.obs_size}, {rule.action_size}); one loss network reads them all")
    groups = []
    for task in tasks:
        task = dataclasses.replace(task, learning_rates=learning_rates, discounts=discounts)
        agent = training.build_agent(task, rule.output_spec, grad_clip=rule.agent_grad_clip)
        groups.append(population.GroupSpec(
            task=task, agent=agent, critic=agent_lib.Agent(network=agent.network, optimiser="adam"),
            rule=rule, num_lifetimes=int(meta.es.population), num_envs=num_envs,
            lifetime_steps=int(meta.lifetime_steps),
            entropy_costs=tuple(float(b) for b in meta.entropy_costs), td_lambda=float(meta.td_lambda)))
    return es_lib.ESTrainer(rule=rule, groups=tuple(groups), es=build.es_config(config),
                            unroll_length=int(meta.unroll_length),
                            lifetimes_per_chunk=int(meta.lifetimes_per_chunk), mesh=mesh)
