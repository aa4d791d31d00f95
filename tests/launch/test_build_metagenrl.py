"""launch/build_metagenrl.py: MetaGenRL configs validate, bad values are named, the trainer builds."""

import importlib.util
import os

import pytest

from launch import build
from lpg.meta import metagenrl as meta_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(preset):
    path = os.path.join(REPO, "experiments", "configs", "metagenrl.py")
    spec = importlib.util.spec_from_file_location("metagenrl_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


@pytest.mark.parametrize("preset", ["cpu", "table2_cpu", "table2_cpu_resets", "paper"])
def test_presets_validate(preset):
    build.validate_config(_config(preset))


def test_paper_preset_has_the_papers_values():
    c = _config("paper")
    assert (c.agent.hidden, c.agent.batch_size, c.agent.learning_rate, c.agent.discount) == (
        (350, 350, 350), 100, 1e-3, 0.99)
    assert (c.meta.num_agents, c.meta.inner_steps, c.rule.lstm_size, c.meta.sequence_length) == (20, 3, 32, 20)


def test_resets_preset_builds_a_trainer_that_resets():
    trainer = build.make_trainer(_config("table2_cpu_resets"))
    assert trainer.agent_lifetime == 7_500 and trainer.ddpg_anneal_steps == 10_000
    assert [trainer.reset_interval(g) for g in trainer.groups] == [1_875, 1_875]  # 4 agents per task


def test_cpu_preset_builds_a_trainer():
    trainer = build.make_trainer(_config("cpu"))
    assert isinstance(trainer, meta_lib.MetaGenRLTrainer)
    assert trainer.num_agents == 4 and trainer.rule.lstm_size == 16


@pytest.mark.parametrize("key, value, match", [
    ("rule.lstm_size", 0, "config.rule.lstm_size .* got 0"),
    ("rule.reduction", "max", "config.rule.reduction .* got 'max'"),
    ("agent.tau", 0.0, "config.agent.tau .* got 0.0"),
    ("meta.inner_steps", 0, "config.meta.inner_steps .* got 0"),
    ("meta.sequence_length", 20_000, "config.meta.sequence_length=20000"),
    ("meta.num_agents", 3, "config.meta.num_agents=3"),  # 3 agents over the paper's 2 tasks
    ("meta.tasks", "gymnax/NoSuchEnv", "config.meta.tasks"),
    ("meta.agent_lifetime", -5, "config.meta.agent_lifetime .* got -5"),
])
def test_bad_values_are_named(key, value, match):
    c = _config("paper")
    section, name = key.split(".")
    c[section][name] = value
    with pytest.raises(ValueError, match=match):
        build.validate_config(c)
