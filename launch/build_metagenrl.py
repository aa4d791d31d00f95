"""Turns a MetaGenRL experiment config (experiments/configs/metagenrl.py) into its meta-trainer.

`launch.build.make_trainer` / `validate_config` dispatch here on `config.method == "metagenrl"`,
so the launcher (launch/train.py), checkpoints and resume are shared with LPG and EPG.
`validate_config` checks every value (cheap, no jax work) before anything is built; the library
dataclasses (`metagenrl.Objective`, `td3.TD3`, `MetaGenRLTrainer`) check them again, and their
errors are re-raised naming the config section.
"""

from __future__ import annotations

import ml_collections

import envs
from launch import build
from lpg import td3
from lpg.meta import metagenrl as meta_lib
from lpg.rules import metagenrl as rule_lib

RULE_RANGES = {
    "rule.lstm_size": build.COUNT,
    "rule.action_layers": build.COUNT,
    "rule.action_filters": build.Range(low=2, integer=True),
    "rule.output_bound": build.POSITIVE,
}
AGENT_INTS = ("num_envs", "buffer_capacity", "batch_size", "warmup_steps", "policy_delay")
CONFIG_RANGES = {
    **{f"agent.{name}": build.COUNT for name in AGENT_INTS},
    "agent.tau": build.Range(low=0, high=1, low_open=True),
    "agent.exploration_noise": build.NON_NEGATIVE,
    "agent.policy_noise": build.NON_NEGATIVE,
    "agent.noise_clip": build.NON_NEGATIVE,
    "agent.learning_rate": build.POSITIVE,
    "agent.discount": build.Range(low=0, high=0.999999, low_open=True),
    "meta.num_agents": build.COUNT,
    "meta.sequence_length": build.COUNT,
    "meta.sequence_batch_size": build.COUNT,
    "meta.inner_steps": build.COUNT,
    "meta.inner_learning_rate": build.POSITIVE,
    "meta.learning_rate": build.POSITIVE,
    "meta.max_grad_norm": build.POSITIVE,
    "meta.ddpg_anneal_steps": build.Range(low=0, integer=True),
    "meta.agent_lifetime": build.Range(low=0, integer=True),
    "meta.steps": build.COUNT,
    "log_every": build.COUNT,
    "checkpoint_every": build.COUNT,
    "keep_checkpoints": build.COUNT,
    "seed": build.INTEGER,
}


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raises ValueError naming the first bad value of a MetaGenRL config and what is allowed."""
    for key, allowed in {**RULE_RANGES, **CONFIG_RANGES}.items():
        build.check_range(key, build._lookup(config, key), allowed)  # pylint: disable=protected-access
    reduction = build._lookup(config, "rule.reduction")  # pylint: disable=protected-access
    if reduction not in rule_lib.REDUCTIONS:
        raise ValueError(f"config.rule.reduction must be one of {rule_lib.REDUCTIONS}, got {reduction!r}")
    hidden = build._lookup(config, "agent.hidden")  # pylint: disable=protected-access
    build.check_list_range("agent.hidden", hidden, build.COUNT)
    if not isinstance(build._lookup(config, "agent.layer_norm"), bool):  # pylint: disable=protected-access
        raise ValueError(f"config.agent.layer_norm must be True or False, got {config.agent.layer_norm!r}")
    tasks = build._parse_tasks_of(config, "meta.tasks")  # pylint: disable=protected-access
    meta, agent = config.meta, config.agent
    if meta.num_agents % len(tasks):
        raise ValueError(f"config.meta.num_agents={meta.num_agents} must split evenly over the "
                         f"{len(tasks)} tasks of config.meta.tasks={meta.tasks!r}")
    if meta.sequence_length > agent.warmup_steps:
        raise ValueError(f"config.meta.sequence_length={meta.sequence_length} must be at most "
                         f"config.agent.warmup_steps={agent.warmup_steps} (episodes are sampled "
                         "from the first meta-step)")
    per_task = meta.num_agents // len(tasks)
    try:
        build.sharding.check_divisible({name: per_task for name in tasks}, num_devices)
    except ValueError as err:
        raise ValueError(f"config.meta.num_agents={meta.num_agents} on {num_devices} device(s): {err}") from None


def make_trainer(config: ml_collections.ConfigDict, mesh=None) -> meta_lib.MetaGenRLTrainer:
    """The MetaGenRL trainer of a config (first `validate_config`): one `AgentGroup` per task of
    config.meta.tasks, config.meta.num_agents split evenly over them."""
    validate_config(config, 1 if mesh is None else mesh.size)
    rule, agent, meta = config.rule, config.agent, config.meta
    tasks = build.parse_tasks(meta.tasks)
    try:
        objective = rule_lib.Objective(
            lstm_size=int(rule.lstm_size), action_layers=int(rule.action_layers),
            action_filters=int(rule.action_filters), output_bound=float(rule.output_bound),
            reduction=str(rule.reduction))
    except ValueError as err:
        raise ValueError(f"config.rule: {err}") from None
    try:
        agent_config = td3.TD3(
            hidden=tuple(int(w) for w in agent.hidden), layer_norm=bool(agent.layer_norm),
            **{name: int(agent[name]) for name in AGENT_INTS}, tau=float(agent.tau),
            exploration_noise=float(agent.exploration_noise), policy_noise=float(agent.policy_noise),
            noise_clip=float(agent.noise_clip))
    except ValueError as err:
        raise ValueError(f"config.agent: {err}") from None
    per_task = int(meta.num_agents) // len(tasks)
    groups = tuple(meta_lib.AgentGroup(envs.make(name), per_task) for name in tasks)
    try:
        return meta_lib.MetaGenRLTrainer(
            objective=objective, groups=groups, td3=agent_config,
            sequence_length=int(meta.sequence_length), sequence_batch_size=int(meta.sequence_batch_size),
            inner_steps=int(meta.inner_steps), learning_rate=float(agent.learning_rate),
            discount=float(agent.discount), inner_learning_rate=float(meta.inner_learning_rate),
            meta_learning_rate=float(meta.learning_rate), max_meta_grad_norm=float(meta.max_grad_norm),
            ddpg_anneal_steps=int(meta.ddpg_anneal_steps), agent_lifetime=int(meta.agent_lifetime),
            mesh=mesh)
    except ValueError as err:
        raise ValueError(f"config.meta: {err}") from None
