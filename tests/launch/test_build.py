"""Tests of launch/build.py's config validation: every bad value is refused, naming its key."""

import math
import re

import ml_collections
import numpy as np
import pytest

from experiments.configs import epg as epg_configs
from experiments.configs import lpg as lpg_configs
from launch import build

NAN, INF = math.nan, math.inf


def with_value(key: str, value, preset: str = "cpu", configs=lpg_configs) -> ml_collections.ConfigDict:
    """`configs`' preset with config.`key` = `value`, built from a plain dict: ml_collections' own
    type checks would refuse some of these values on assignment, a config loaded from JSON would not."""
    d = configs.get_config(preset).to_dict()
    *sections, name = key.split(".")
    node = d
    for section in sections:
        node = node[section]
    node[name] = value
    return ml_collections.ConfigDict(d)


BAD_VALUES = [
    # The two inputs of the issue.
    ("meta.entropy_costs", (-0.1, 0.02)),
    ("bandit.temperature", 0),
    # Sizes and counts: integers >= 1; floats, booleans, NaN refused.
    ("rule.hidden_size", 0),
    ("rule.hidden_size", True),
    ("rule.y_dim", 2.5),
    ("rule.y_dim", -3),
    ("bandit.window", 0),
    ("bandit.window", 2.5),
    ("meta.lifetimes_per_task", 2.5),
    ("meta.lifetimes_per_task", 0),
    ("meta.num_envs", 0),
    ("meta.num_envs", NAN),
    ("meta.unroll_length", -1),
    ("meta.num_updates", True),
    ("meta.num_updates", 2.0),
    ("meta.steps", 0),
    ("meta.lifetimes_per_chunk", -1),
    ("meta.lifetimes_per_chunk", 1.5),
    ("log_every", 0),
    ("checkpoint_every", 0),
    ("keep_checkpoints", 0),
    ("seed", 0.5),
    ("seed", True),
    ("eval.seeds", 0),
    ("eval.seeds", True),
    ("eval.selection_seeds", 2.5),
    ("eval.num_envs", 0),
    ("eval.env_steps", -1),
    ("eval.env_steps", 1e5),
    # Costs and coefficients: finite numbers >= 0 (NaN passes `< 0`; it must not pass here).
    ("objective.y_entropy_cost", -1e-3),
    ("objective.pi_hat_l2_cost", NAN),
    ("objective.y_hat_l2_cost", INF),
    ("bandit.bonus", -0.2),
    ("bandit.bonus", NAN),
    ("meta.entropy_floor", -1e-3),
    ("meta.entropy_floor", NAN),
    ("meta.agent_grad_clip", -1.0),
    ("meta.agent_grad_clip", NAN),
    ("eval.y_cost", -0.5),
    ("eval.learning_rate", -1.0),
    ("eval.learning_rate", NAN),
    # Rates and scales: finite numbers > 0.
    ("bandit.temperature", NAN),
    ("bandit.temperature", -0.1),
    ("meta.lifetime_scale", 0.0),
    ("meta.lifetime_scale", INF),
    ("meta.learning_rate", NAN),
    ("meta.learning_rate", INF),
    ("meta.learning_rate", False),
    ("meta.max_grad_norm", 0.0),
    ("meta.lr_decay_begin", -1),
    ("meta.lr_decay_steps", 2.5),
    ("meta.lr_final_fraction", 1.5),
    ("meta.critic_learning_rate", -1e-3),
    ("meta.critic_learning_rate_tabular", NAN),
    # λ in [0, 1].
    ("meta.td_lambda", 1.5),
    ("meta.td_lambda", -0.1),
    ("meta.td_lambda", NAN),
    # β0 choices: a non-empty list of finite numbers >= 0.
    ("meta.entropy_costs", ()),
    ("meta.entropy_costs", (0.01, NAN)),
    ("meta.entropy_costs", (0.01, INF)),
    ("meta.entropy_costs", 0.01),
    ("meta.entropy_costs", (0.01, True)),
    # Non-numeric entries.
    ("bandit.enabled", 1),
    ("rule.y_softmax", "yes"),
    ("rule.kind", "lpg2"),
    ("rule.matmul_dtype", "float64"),
    ("meta.remat", "partial"),
    ("meta.tasks", "tabular/nope"),
    ("eval.tasks", "tabular/dense,tabular/nope"),
]


@pytest.mark.parametrize("key, value", BAD_VALUES)
def test_bad_value_is_refused_naming_key_and_value(key, value):
    with pytest.raises(ValueError, match=re.escape(f"config.{key}")) as err:
        build.validate_config(with_value(key, value))
    assert repr(value) in str(err.value)


@pytest.mark.parametrize("key, value", [("meta.entropy_costs", (-0.1, 0.02)), ("bandit.temperature", 0)])
def test_make_trainer_validates_first(key, value):
    with pytest.raises(ValueError, match=re.escape(f"config.{key}")):
        build.make_trainer(with_value(key, value))


def test_issue_inputs_get_messages_that_say_what_is_allowed():
    with pytest.raises(ValueError) as err:
        build.validate_config(with_value("meta.entropy_costs", (-0.1, 0.02)))
    assert str(err.value) == ("config.meta.entropy_costs must be a non-empty list, each element a "
                              "finite number >= 0, got (-0.1, 0.02)")
    with pytest.raises(ValueError) as err:
        build.validate_config(with_value("bandit.temperature", 0))
    assert str(err.value) == "config.bandit.temperature must be a finite number > 0, got 0"


@pytest.mark.parametrize("key, value", [
    ("meta.td_lambda", 0.0),
    ("meta.td_lambda", 1),
    ("meta.agent_grad_clip", 0.0),
    ("meta.lifetimes_per_chunk", 0),
    ("meta.lifetime_scale", 2.0),
    ("meta.entropy_costs", [0.0]),
    ("meta.entropy_costs", (0, 1)),
    ("eval.env_steps", 0),
    ("eval.learning_rate", 0.0),
    ("bandit.bonus", 0),
    ("seed", -3),
    ("meta.steps", np.int64(7)),
    ("eval.seeds", "100-107"),  # seed specs are parsed by launch/eval_report.py
    ("eval.selection_seeds", 3),
])
def test_boundary_values_are_accepted(key, value):
    build.validate_config(with_value(key, value))


def es_with_value(key, value):
    """`with_value` on the cpu preset switched to the ES estimator."""
    d = with_value(key, value).to_dict()
    if key != "meta.estimator":
        d["meta"]["estimator"] = "es"
    return ml_collections.ConfigDict(d)


@pytest.mark.parametrize("key, value", [
    ("meta.estimator", "reinforce"),
    ("meta.es.population", 7),
    ("meta.es.population", 0),
    ("meta.es.sigma", 0.0),
    ("meta.es.sigma_decay", 1.5),
    ("meta.es.sigma_min", 0.5),  # above sigma = 0.01
    ("meta.es.learning_rate", NAN),
    ("meta.es.fitness", "best"),
    ("meta.es.anneal", "pg_guidance:1:0"),
    ("meta.es.anneal", "pg_guidance:1:0:0"),
])
def test_bad_es_value_is_refused_naming_key_and_value(key, value):
    with pytest.raises(ValueError, match=re.escape(f"config.{key}")) as err:
        build.validate_config(es_with_value(key, value))
    assert repr(value) in str(err.value) or str(value) in str(err.value)


def test_es_population_must_split_over_devices_and_es_builds_an_es_trainer():
    with pytest.raises(ValueError, match="meta.es.population=6 .* on 4 device"):
        build.validate_config(es_with_value("meta.es.population", 6), num_devices=4)
    build.validate_config(es_with_value("meta.es.population", 6), num_devices=2)
    # Backprop ignores the ES section (saved configs without it still build).
    build.validate_config(with_value("meta.es.population", 7))
    config = lpg_configs.get_config("cpu")
    del config.meta["estimator"], config.meta["es"]
    assert type(build.make_trainer(config)).__name__ == "MetaTrainer"
    trainer = build.make_trainer(es_with_value("meta.es.anneal", ""))
    assert type(trainer).__name__ == "ESTrainer"
    assert [g.num_lifetimes for g in trainer.groups] == [8, 8]  # the population, not lifetimes_per_task
    assert build.parse_anneal("a:1:0:5, b:0.5:0.1:2") == (("a", 1.0, 0.0, 5), ("b", 0.5, 0.1, 2))


def test_missing_entry_is_named():
    config = lpg_configs.get_config("cpu")
    del config.meta["td_lambda"]
    with pytest.raises(ValueError, match=re.escape("config.meta.td_lambda is missing")):
        build.validate_config(config)


def test_lifetimes_must_split_over_devices_and_chunks():
    config = with_value("meta.lifetimes_per_task", 6)
    with pytest.raises(ValueError, match="lifetimes_per_task=6 .* on 4 device"):
        build.validate_config(config, num_devices=4)
    build.validate_config(config, num_devices=2)
    with pytest.raises(ValueError, match="lifetimes_per_chunk=3 does not divide"):
        build.validate_config(with_value("meta.lifetimes_per_chunk", 3), num_devices=1)


def test_rule_config_alone_is_checked():
    with pytest.raises(ValueError, match=re.escape("config.rule.y_dim must be an integer >= 1, got 0")):
        build.make_rule(ml_collections.ConfigDict({"hidden_size": 8, "y_dim": 0, "y_softmax": True}))
    with pytest.raises(ValueError, match=re.escape("config.rule.hidden_size is missing")):
        build.make_rule(ml_collections.ConfigDict({"y_dim": 4, "y_softmax": True}))


@pytest.mark.parametrize("preset", lpg_configs.PRESETS)
def test_presets_pass_validation(preset):
    config = lpg_configs.get_config(preset)
    if preset == "cpu":
        trainer = build.make_trainer(config)
        assert len(trainer.groups) == 2
    else:  # the larger presets take a while to build; their values are what matters here
        build.validate_config(config)


@pytest.mark.parametrize("preset", sorted(lpg_configs.FIG7_CHANGES))
def test_fig7_presets_change_exactly_one_thing_of_the_tabular_preset(preset):
    """Each ablation (and LPG-V) is `tabular` with only its FIG7_CHANGES entries different."""
    def flat(config):
        out = {}
        def walk(node, prefix):
            for k, v in node.items():
                if isinstance(v, dict):
                    walk(v, f"{prefix}{k}.")
                else:
                    out[f"{prefix}{k}"] = v
        walk(config.to_dict(), "")
        return out

    base, ablated = flat(lpg_configs.get_config(lpg_configs.FIG7_BASE)), flat(lpg_configs.get_config(preset))
    assert set(base) == set(ablated)
    differing = {k: ablated[k] for k in base if base[k] != ablated[k]}
    assert differing == {"preset": preset, **lpg_configs.FIG7_CHANGES[preset]}
    assert ablated["meta.tasks"] == ",".join(lpg_configs.TABULAR_GRIDS)


def test_lpg_v_config_builds_an_lpg_v_trainer():
    config = with_value("rule.kind", "lpg_v")
    config.rule.y_dim = 0  # LPG-V reads no y entries: whatever they hold is not checked
    trainer = build.make_trainer(config)
    assert type(trainer.rule).__name__ == "LPGV" and trainer.rule.KIND == "lpg_v"
    assert trainer.rule.value_costs == tuple(config.rule.value_costs)
    assert not trainer.objective.y_softmax
    for spec in trainer.groups:
        assert spec.agent.network.outputs.y_dim == 0 and spec.agent.network.outputs.value
        assert len(spec.arms) == len(spec.task.learning_rates) * len(config.rule.value_costs)
    # A saved LPG-V rule config alone (no y entries at all) is checked and built too.
    rule = build.make_rule(ml_collections.ConfigDict(trainer.rule.config() | {"kind": "lpg_v"}))
    assert rule == trainer.rule
    with pytest.raises(ValueError, match=re.escape("config.rule.value_costs must be a non-empty list")):
        build.validate_config(with_value("rule.value_costs", (0.05, 0.0), "lpg_v"))
    build.validate_config(with_value("rule.value_costs", (), "cpu"))  # LPG ignores LPG-V's grid


# ------------------------------------------------------------------------------------ EPG


def epg_with_value(key, value, preset="cpu"):
    return with_value(key, value, preset, configs=epg_configs)


@pytest.mark.parametrize("preset", epg_configs.PRESETS)
def test_epg_presets_pass_validation(preset):
    build.validate_config(epg_with_value("seed", 0, preset))


@pytest.mark.parametrize("key, value", [
    ("method", "maml"),
    ("rule.buffer_length", 0),
    ("rule.use_reward", 1),
    ("rule.activation", "relu6"),
    ("meta.num_envs", 0),
    ("meta.learning_rates", ()),
    ("meta.discounts", (0.0,)),
    ("meta.estimator", "backprop"),
    ("meta.es.population", 5),
    ("meta.es.anneal", "pg_guidance:1:0"),
    ("rule.minibatches", 3),  # does not divide num_envs = 8
    ("meta.lifetime_steps", 100),  # shorter than one update
])
def test_bad_epg_value_is_refused_naming_key_and_value(key, value):
    with pytest.raises(ValueError, match=re.escape(f"config.{key}")) as err:
        build.validate_config(epg_with_value(key, value))
    assert repr(value) in str(err.value) or str(value) in str(err.value)


def test_epg_cpu_preset_builds_an_es_trainer_of_the_epg_rule():
    trainer = build.make_trainer(epg_with_value("seed", 0))
    assert type(trainer).__name__ == "ESTrainer" and trainer.rule.KIND == "epg"
    assert (trainer.rule.obs_size, trainer.rule.action_size, trainer.rule.discrete) == (3, 1, False)
    assert trainer.es.anneal == (("pg_guidance", 1.0, 0.0, 100),)
    assert trainer.groups[0].task.learning_rates == (1e-3,) and trainer.groups[0].task.discounts == (0.9,)
    with pytest.raises(ValueError, match=re.escape("config.rule: EPG: the first conv")):
        build.make_trainer(epg_with_value("rule.conv1_stride", 20))
