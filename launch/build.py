"""Turns an experiment config into library objects, validating every value first.

The only place that reads an LPG experiment config: library components get explicit arguments.
`validate_config` range-checks every value (cheap, no jax work); `make_trainer` calls it first.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import ml_collections

import envs
from lpg import agent as agent_lib
from lpg import training
from lpg import types
from lpg.meta import es as es_lib
from lpg.meta import gradient
from lpg.meta import objective as objective_lib
from lpg.meta import population
from lpg.meta import sharding
from lpg.meta import trainer as trainer_lib
from lpg.rules import base as rules_base
from lpg.rules import lpg as lpg_rule
from lpg.rules import lpg_v as lpg_v_rule


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of one numeric config entry: a finite number (an integer if `integer`)
    in the interval from `low` to `high`; `low_open` excludes `low` itself. Booleans never pass."""
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    integer: bool = False

    def allows(self, value) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        above_low = value > self.low if self.low_open else value >= self.low
        return above_low and value <= self.high

    def describe(self) -> str:
        """E.g. 'an integer >= 1', 'a finite number > 0', 'a finite number in [0, 1]'."""
        kind = "an integer" if self.integer else "a finite number"
        if math.isfinite(self.low) and math.isfinite(self.high):
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if math.isfinite(self.low):
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if math.isfinite(self.high):
            return f"{kind} <= {self.high:g}"
        return kind


POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
COUNT = Range(low=1, integer=True)  # sizes, step counts, intervals
INTEGER = Range(integer=True)

# Every numeric entry of an LPG config (experiments/configs/lpg.py) and what it may hold.
# config.rule.kind: which learned rule the config meta-trains ("lpg" when absent, as in configs
# saved before LPG-V): LPG, or LPG-V (lpg/rules/lpg_v.py: π̂ only, a TD(λ) value instead of y).
RULE_KINDS = ("lpg", "lpg_v")
RULE_RANGES = {  # config.rule (also checked alone, for a rule saved without its experiment)
    "hidden_size": COUNT,
}
RULE_RANGES_OF_KIND = {"lpg": {"y_dim": COUNT}, "lpg_v": {}}
RULE_LIST_RANGES_OF_KIND = {"lpg": {}, "lpg_v": {"value_costs": POSITIVE}}  # LPG-V's α_V grid
CONFIG_RANGES = {
    "objective.y_entropy_cost": NON_NEGATIVE,
    "objective.pi_hat_l2_cost": NON_NEGATIVE,
    "objective.y_hat_l2_cost": NON_NEGATIVE,
    "bandit.temperature": POSITIVE,
    "bandit.bonus": NON_NEGATIVE,
    "bandit.window": COUNT,
    "meta.lifetimes_per_task": COUNT,
    "meta.num_envs": COUNT,
    "meta.unroll_length": COUNT,
    "meta.num_updates": COUNT,
    "meta.steps": COUNT,
    "meta.lifetime_scale": POSITIVE,  # > 1 lengthens lifetimes beyond the paper's
    "meta.learning_rate": POSITIVE,
    "meta.max_grad_norm": POSITIVE,
    "meta.lr_decay_begin": Range(low=0, integer=True),  # meta-step where the cosine decay starts
    "meta.lr_decay_steps": Range(low=0, integer=True),  # 0: constant meta learning rate
    "meta.lr_final_fraction": Range(low=0, high=1),
    "meta.critic_learning_rate": POSITIVE,
    "meta.critic_learning_rate_tabular": POSITIVE,
    "meta.td_lambda": Range(low=0, high=1),
    "meta.entropy_floor": NON_NEGATIVE,
    "meta.agent_grad_clip": NON_NEGATIVE,  # 0: no clipping
    "meta.lifetimes_per_chunk": Range(low=0, integer=True),  # 0: no chunking
    "log_every": COUNT,
    "checkpoint_every": COUNT,
    "keep_checkpoints": COUNT,
    "seed": INTEGER,
    "eval.num_envs": COUNT,
    "eval.env_steps": Range(low=0, integer=True),  # 0: each task's full lifetime
    "eval.y_cost": NON_NEGATIVE,  # 0: selected from the rule's grid (rule.y_costs)
    "eval.learning_rate": NON_NEGATIVE,  # 0: selected from the task's grid
}
# Seed specs of the evaluation: a count n >= 1, or a string such as "0-3" or "100,101" that
# launch/eval_report.py parses (only counts are checked here). selection_seeds may be absent.
SEED_SPEC_KEYS = ("eval.seeds", "eval.selection_seeds")
# Entries holding a non-empty list of numbers, each in the range.
CONFIG_LIST_RANGES = {
    "meta.entropy_costs": NON_NEGATIVE,
    "rule.y_costs": POSITIVE,  # LPG's α_y grid (the bandit's second axis)
}
BOOLEAN_KEYS = ("bandit.enabled",)
# How η's meta-gradient is estimated (config.meta.estimator; absent in configs saved before ES).
ESTIMATORS = ("backprop", "es")
# config.meta.es entries, checked when config.meta.estimator == "es" (lpg/meta/es.py, ESConfig).
ES_RANGES = {
    "meta.es.population": Range(low=2, integer=True),  # even: antithetic pairs (checked below)
    "meta.es.sigma": POSITIVE,
    "meta.es.sigma_decay": Range(low=0, high=1, low_open=True),
    "meta.es.sigma_min": NON_NEGATIVE,
    "meta.es.learning_rate": POSITIVE,
    "meta.es.max_grad_norm": NON_NEGATIVE,  # 0: no clipping
    "meta.es.final_fraction": Range(low=0, high=1, low_open=True),
}


def _lookup(config, key: str, prefix: str = ""):
    """config['a.b'] → config.a.b; a missing entry is a ValueError naming config.`prefix``key`."""
    value = config
    for part in key.split("."):
        if not hasattr(value, "keys") or part not in value:
            raise ValueError(f"config.{prefix}{key} is missing")
        value = value[part]
    return value


def check_range(key: str, value, allowed: Range) -> None:
    """Raises ValueError naming config.`key`, `value` and what is allowed unless `allowed` holds it."""
    if not allowed.allows(value):
        raise ValueError(f"config.{key} must be {allowed.describe()}, got {value!r}")


def check_list_range(key: str, values, allowed: Range) -> None:
    """Like `check_range` for a non-empty list/tuple whose every element must be allowed."""
    if (not isinstance(values, (list, tuple)) or not values
            or not all(allowed.allows(v) for v in values)):
        raise ValueError(f"config.{key} must be a non-empty list, each element "
                         f"{allowed.describe()}, got {values!r}")


def rule_kind_of(rule_config) -> str:
    """config.rule.kind ("lpg" when absent), checked."""
    kind = rule_config.get("kind", "lpg")
    if kind not in RULE_KINDS:
        raise ValueError(f"config.rule.kind must be one of {RULE_KINDS}, got {kind!r}")
    return kind


def check_rule_config(rule_config) -> None:
    """Validates a rule config (config.rule, or the one saved with a rule); only the entries the
    rule's kind reads (LPG-V has no y, LPG no α_V grid)."""
    kind = rule_kind_of(rule_config)
    for name, allowed in {**RULE_RANGES, **RULE_RANGES_OF_KIND[kind]}.items():
        check_range(f"rule.{name}", _lookup(rule_config, name, "rule."), allowed)
    for name, allowed in RULE_LIST_RANGES_OF_KIND[kind].items():
        check_list_range(f"rule.{name}", _lookup(rule_config, name, "rule."), allowed)
    if kind == "lpg":
        y_softmax = _lookup(rule_config, "y_softmax", "rule.")
        if not isinstance(y_softmax, bool):
            raise ValueError(f"config.rule.y_softmax must be True or False, got {y_softmax!r}")
    # Rules saved before matmul_dtype existed were float32.
    matmul_dtype = rule_config.get("matmul_dtype", "float32")
    if matmul_dtype not in lpg_rule.MATMUL_DTYPES:
        raise ValueError(f"config.rule.matmul_dtype must be one of {lpg_rule.MATMUL_DTYPES}, got {matmul_dtype!r}")


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raises ValueError naming the first bad value of an LPG experiment config and what is allowed.

    Cheap (no jax work), so a launcher refuses bad input before it builds or touches anything.
    num_devices: the population mesh size the lifetimes must split over.
    The trainer adds checks that need its derived values (e.g. a meta-step longer than a lifetime).
    An EPG config (config.method == "epg") is checked by launch/build_epg.py, a MetaGenRL config
    (config.method == "metagenrl") by launch/build_metagenrl.py.
    """
    if method_of(config) == "epg":
        from launch import build_epg  # pylint: disable=g-import-not-at-top  (it imports this module)
        build_epg.validate_config(config, num_devices)
        return
    if method_of(config) == "metagenrl":
        from launch import build_metagenrl  # pylint: disable=g-import-not-at-top  (it imports this module)
        build_metagenrl.validate_config(config, num_devices)
        return
    check_rule_config(_lookup(config, "rule"))
    for key, allowed in CONFIG_RANGES.items():
        check_range(key, _lookup(config, key), allowed)
    for key, allowed in CONFIG_LIST_RANGES.items():
        check_list_range(key, _lookup(config, key), allowed)
    for key in SEED_SPEC_KEYS:
        section, name = key.split(".")
        value = _lookup(config, section).get(name, "")
        if not isinstance(value, str) and not COUNT.allows(value):
            raise ValueError(f"config.{key} must be a count of seeds ({COUNT.describe()}) or a seed "
                             f"spec string such as '0-3', got {value!r}")
    for key in BOOLEAN_KEYS:
        value = _lookup(config, key)
        if not isinstance(value, bool):
            raise ValueError(f"config.{key} must be True or False, got {value!r}")
    remat = _lookup(config, "meta.remat")
    if remat not in gradient.REMAT_POLICIES:
        raise ValueError(f"config.meta.remat must be one of {gradient.REMAT_POLICIES}, got {remat!r}")
    tasks = _parse_tasks_of(config, "meta.tasks")
    _parse_tasks_of(config, "eval.tasks")  # fail now, not after hours of training (--evaluate)
    meta = config.meta
    estimator = estimator_of(config)
    lifetimes = meta.lifetimes_per_task
    if estimator == "es":
        _validate_es(config)
        lifetimes = meta.es.population  # ES runs one lifetime per candidate and task
    try:
        sharding.check_divisible({name: lifetimes for name in tasks},
                                 num_devices, meta.lifetimes_per_chunk)
    except ValueError as err:
        what = (f"meta.es.population={meta.es.population}" if estimator == "es"
                else f"meta.lifetimes_per_task={meta.lifetimes_per_task}")
        raise ValueError(f"config.{what} / lifetimes_per_chunk={meta.lifetimes_per_chunk} on {num_devices} "
                         f"device(s): {err}") from None


METHODS = ("lpg", "epg", "metagenrl")


def method_of(config) -> str:
    """config.method: which discovery method the config trains ("lpg" when absent)."""
    method = config.get("method", "lpg")
    if method not in METHODS:
        raise ValueError(f"config.method must be one of {METHODS}, got {method!r}")
    return method


def estimator_of(config) -> str:
    """config.meta.estimator ("backprop" when absent, as in configs saved before ES), checked."""
    estimator = config.meta.get("estimator", "backprop")
    if estimator not in ESTIMATORS:
        raise ValueError(f"config.meta.estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return estimator


def parse_anneal(text: str) -> tuple[tuple[str, float, float, int], ...]:
    """'name:start:end:generations,...' → ((name, start, end, generations), ...); '' → ()."""
    entries = []
    for item in (s.strip() for s in str(text).split(",")):
        if not item:
            continue
        parts = item.split(":")
        try:
            name, start, end, generations = parts[0], float(parts[1]), float(parts[2]), int(parts[3])
            if len(parts) != 4 or not name or generations < 1 or not (math.isfinite(start) and math.isfinite(end)):
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(f"config.meta.es.anneal entry {item!r} must be name:start:end:generations "
                             "with finite start/end and generations >= 1, e.g. 'pg_guidance:1:0:500'") from None
        entries.append((name, start, end, generations))
    return tuple(entries)


def _validate_es(config) -> None:
    for key, allowed in ES_RANGES.items():
        check_range(key, _lookup(config, key), allowed)
    es = config.meta.es
    if es.population % 2:
        raise ValueError(f"config.meta.es.population must be even (antithetic pairs), got {es.population!r}")
    if es.sigma_min > es.sigma:
        raise ValueError(f"config.meta.es.sigma_min must be <= sigma={es.sigma}, got {es.sigma_min!r}")
    if _lookup(config, "meta.es.fitness") not in es_lib.FITNESS_KINDS:
        raise ValueError(f"config.meta.es.fitness must be one of {es_lib.FITNESS_KINDS}, got {es.fitness!r}")
    parse_anneal(_lookup(config, "meta.es.anneal"))


def es_config(config) -> es_lib.ESConfig:
    es = config.meta.es
    return es_lib.ESConfig(
        population_size=int(es.population), sigma=float(es.sigma), sigma_decay=float(es.sigma_decay),
        sigma_min=float(es.sigma_min), learning_rate=float(es.learning_rate),
        max_grad_norm=float(es.max_grad_norm), fitness=str(es.fitness),
        final_fraction=float(es.final_fraction), anneal=parse_anneal(es.anneal))


def _parse_tasks_of(config, key: str) -> tuple[str, ...]:
    names = _lookup(config, key)
    try:
        return parse_tasks(names)
    except ValueError as err:
        raise ValueError(f"config.{key}={names!r}: {err}") from None


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


def make_rule(rule_config: ml_collections.ConfigDict) -> rules_base.UpdateRule:
    """The learned rule of config.rule (its `kind`: LPG or LPG-V), after `check_rule_config`."""
    check_rule_config(rule_config)
    if rule_kind_of(rule_config) == "lpg_v":
        return lpg_v_rule.LPGV(
            hidden_size=int(rule_config.hidden_size),
            matmul_dtype=str(rule_config.get("matmul_dtype", "float32")),
            value_costs=tuple(float(c) for c in rule_config.value_costs))
    return lpg_rule.LPG(
        hidden_size=int(rule_config.hidden_size), y_dim=int(rule_config.y_dim),
        y_softmax=bool(rule_config.y_softmax),
        matmul_dtype=str(rule_config.get("matmul_dtype", "float32")),
        y_costs=tuple(float(c) for c in rule_config.get("y_costs", lpg_rule.LPG.y_costs)))


def make_trainer(config: ml_collections.ConfigDict, mesh=None) -> trainer_lib.MetaTrainer | es_lib.ESTrainer:
    """Builds the meta-trainer of an LPG config (first `validate_config`: ValueError naming any bad
    value): a `MetaTrainer` (truncated backprop) or, with config.meta.estimator = "es", an
    `ESTrainer` (OpenAI-ES over whole lifetimes of meta.lifetime_scale × the task's lifetime), of
    the rule config.rule.kind names (LPG, or LPG-V).

    mesh: the population mesh (lpg.meta.sharding.population_mesh()); None: the default device.
    An EPG config (config.method == "epg") builds through launch/build_epg.py, a MetaGenRL config
    through launch/build_metagenrl.py.
    """
    if method_of(config) == "epg":
        from launch import build_epg  # pylint: disable=g-import-not-at-top  (it imports this module)
        return build_epg.make_trainer(config, mesh)
    if method_of(config) == "metagenrl":
        from launch import build_metagenrl  # pylint: disable=g-import-not-at-top  (it imports this module)
        return build_metagenrl.make_trainer(config, mesh)
    validate_config(config, 1 if mesh is None else mesh.size)
    meta = config.meta
    estimator = estimator_of(config)
    tasks = parse_tasks(meta.tasks)
    rule = make_rule(config.rule)
    grad_clip = float(meta.agent_grad_clip) or None
    groups = []
    for name in tasks:
        task = envs.make(name)
        agent = training.build_agent(task, rule.output_spec, grad_clip=grad_clip)
        critic_network = training.build_agent(task, types.OutputSpec(value=True)).network
        groups.append(population.GroupSpec(
            task=task,
            agent=agent,
            # Adam for every critic: see objective.critic_update for why not the agent's SGD.
            critic=agent_lib.Agent(network=critic_network, optimiser="adam"),
            rule=rule,
            critic_learning_rate=float(
                meta.critic_learning_rate_tabular if task.agent.kind == "tabular"
                else meta.critic_learning_rate),
            num_lifetimes=int(meta.es.population if estimator == "es" else meta.lifetimes_per_task),
            num_envs=int(meta.num_envs),
            lifetime_steps=max(1, int(task.lifetime_steps * meta.lifetime_scale)),
            entropy_costs=tuple(float(b) for b in meta.entropy_costs),
            td_lambda=float(meta.td_lambda),
        ))
    if estimator == "es":
        return es_lib.ESTrainer(
            rule=rule, groups=tuple(groups), es=es_config(config),
            unroll_length=int(meta.unroll_length), lifetimes_per_chunk=int(meta.lifetimes_per_chunk),
            mesh=mesh)
    return trainer_lib.MetaTrainer(
        rule=rule,
        groups=tuple(groups),
        objective=objective_lib.MetaObjective(
            y_entropy_cost=float(config.objective.y_entropy_cost),
            pi_hat_l2_cost=float(config.objective.pi_hat_l2_cost),
            y_hat_l2_cost=float(config.objective.y_hat_l2_cost),
            # H(y) needs a softmax y; LPG-V has no y (and no ŷ): β1, β3 then have nothing to act on.
            y_softmax=bool(getattr(rule, "y_softmax", False)),
        ),
        num_updates=int(meta.num_updates),
        unroll_length=int(meta.unroll_length),
        meta_learning_rate=float(meta.learning_rate),
        max_meta_grad_norm=float(meta.max_grad_norm),
        meta_lr_decay_begin=int(meta.get("lr_decay_begin", 0)),
        meta_lr_decay_steps=int(meta.get("lr_decay_steps", 0)),
        meta_lr_final_fraction=float(meta.get("lr_final_fraction", 0.1)),
        bandit=population.BanditConfig(
            temperature=float(config.bandit.temperature), bonus=float(config.bandit.bonus),
            window=int(config.bandit.window), enabled=bool(config.bandit.enabled)),
        entropy_floor=float(meta.entropy_floor),
        remat=str(meta.remat),
        lifetimes_per_chunk=int(meta.lifetimes_per_chunk),
        mesh=mesh,
    )
