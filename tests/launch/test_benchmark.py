"""launch/benchmark.py: the metagenrl section's measurement at a tiny size (numbers consistent)."""

import math

import pytest

from launch import benchmark

# Tiny networks, buffers and batches so that the meta-step compiles and runs in seconds; two
# environments per agent so that env steps and critic steps per meta-step differ.
TINY_METAGENRL = {
    "agent.hidden": [8],
    "agent.num_envs": 2,
    "agent.buffer_capacity": 128,
    "agent.batch_size": 8,
    "agent.warmup_steps": 16,
    "rule.lstm_size": 4,
    "rule.action_layers": 1,
    "rule.action_filters": 4,
    "meta.sequence_length": 4,
    "meta.sequence_batch_size": 2,
    "meta.inner_steps": 1,
}


def test_metagenrl_config_applies_agents_and_overrides():
    config = benchmark.metagenrl_config("table2_cpu", 20, TINY_METAGENRL)
    assert config.meta.num_agents == 20
    assert config.agent.hidden == (8,)  # a JSON list back to the config's tuple
    assert config.rule.lstm_size == 4 and config.meta.inner_steps == 1


@pytest.mark.slow  # 21 s: a benchmark's bookkeeping
def test_measure_metagenrl_rates_are_consistent():
    out = benchmark.measure_metagenrl("cpu", num_agents=2, steps_per_call=2, repeats=1,
                                      overrides=TINY_METAGENRL)
    agents, delay = 2, out["config"]["critic_steps_per_policy_step"]
    assert out["config"]["num_agents"] == agents and out["config"]["num_envs"] == 2
    assert out["env_steps_per_meta_step_per_agent"] == delay * 2
    rate = out["meta_steps_per_s"]
    for name in ("meta_steps_per_s", "env_steps_per_s", "critic_steps_per_s", "policy_steps_per_s",
                 "meta_gradient_steps_per_s", "compile_s", "first_step_s", "train_state_mib",
                 "replay_buffer_mib", "peak_rss_mib"):
        assert math.isfinite(out[name]) and out[name] > 0, name
    assert math.isclose(out["env_steps_per_s"], rate * agents * out["env_steps_per_meta_step_per_agent"])
    assert math.isclose(out["critic_steps_per_s"], rate * agents * delay)
    assert math.isclose(out["policy_steps_per_s"], rate * agents)
    assert out["meta_gradient_steps_per_s"] == rate
    assert math.isclose(rate, 1.0 / out["seconds_per_meta_step"])
    assert out["replay_buffer_mib"] < out["train_state_mib"]
    assert out["meta_loss_finite"]
