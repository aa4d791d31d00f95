"""Tests of the meta-training launcher: smoke run, checkpoints, exact resume, bad input."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from launch import build
from launch import checkpoints
from launch import eval_report as evaluate
from launch import train_loop as train
from lpg import evaluation
from tests.launch import tiny_config as tiny_config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config(steps=2) -> ml_collections.ConfigDict:
    """tests/launch/tiny_config.py narrowed to one chain task with 2 lifetimes of 200 steps
    (resets happen within a few meta-steps)."""
    c = tiny_config_lib.get_config()
    c.meta.tasks = "chain/short"
    c.meta.lifetimes_per_task = 2
    c.meta.lifetime_scale = 0.0002
    c.meta.steps = steps
    return c


def _restore_state(workdir, config):
    trainer = build.make_trainer(config)
    ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        state, _ = ckpt.restore(jax.eval_shape(trainer.init, jax.random.key(0)))
    finally:
        ckpt.close()
    return state


def test_exact_resume_is_bit_identical(tmp_path):
    """N steps, save, restore, N more == 2N steps straight (bit for bit on CPU)."""
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train.train(tiny_config(steps=6), straight)
    train.train(tiny_config(steps=3), resumed)
    train.train(tiny_config(steps=6), resumed)
    a = _restore_state(straight, tiny_config())
    b = _restore_state(resumed, tiny_config())
    assert int(a.step) == int(b.step) == 6
    leaves_a = jax.tree.leaves(checkpoints.keys_to_data(a))
    leaves_b = jax.tree.leaves(checkpoints.keys_to_data(b))
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # Something actually happened over the 6 steps: every lifetime (a 200-step budget, 60 steps
    # per meta-step) was reset at least once, so none has taken all 6 × 60 steps; the finished
    # lifetimes fed the bandit; η moved from its initial value.
    config = tiny_config()
    trainer = build.make_trainer(config)
    steps_without_reset = 6 * trainer.steps_per_meta_step(trainer.groups[0])
    assert trainer.groups[0].lifetime_steps < steps_without_reset
    assert np.all(np.asarray(a.groups[0].lifetimes.steps) < steps_without_reset), a.groups[0].lifetimes.steps
    assert int(jnp.sum(a.groups[0].bandit.counts)) > 0
    fresh = trainer.init(jax.random.key(config.seed))
    moved = [bool(jnp.any(x != y)) for x, y in zip(jax.tree.leaves(a.meta_params), jax.tree.leaves(fresh.meta_params))]
    assert all(moved)

    # The exported rule and the checkpoint both evaluate.
    rule, params, _ = checkpoints.load_rule(os.path.join(straight, "rule"))
    jax.tree.map(np.testing.assert_array_equal, params, a.meta_params)
    protocol = evaluation.Protocol(selection_seeds=(0,), report_seeds=(100, 101))
    summary = evaluate.evaluate_rule_on_tasks(
        rule, params, tasks="chain/short", protocol=protocol, env_steps=2_000, num_envs=4,
        workdir=str(tmp_path / "eval"), a2c_tuned_table={"chain/short": (40.0, 0.05, 0.01, 0.99, 0.95)})
    assert set(summary["chain/short"]) >= {"LPG", "A2C", "comparison"}
    for name in ("results.md", "eval_final_returns.csv", "chain_short.png"):
        assert os.path.getsize(tmp_path / "eval" / name) > 0


def es_config(steps=2) -> ml_collections.ConfigDict:
    """tiny_config with the ES estimator: 4 candidates (2 antithetic pairs) × lifetimes of 200
    steps (10 updates of 4 envs × T = 5)."""
    c = tiny_config(steps)
    c.meta.estimator = "es"
    c.meta.es.population = 4
    return c


@pytest.mark.slow  # 27 s; exact resume stays covered for LPG in the default suite
def test_es_exact_resume_is_bit_identical(tmp_path):
    """ES through the launcher: N generations, save, restore, N more == 2N straight, bit for bit;
    η moved, and the exported rule holds the ES mean."""
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train.train(es_config(steps=4), straight)
    train.train(es_config(steps=2), resumed)
    train.train(es_config(steps=4), resumed)
    a, b = (_restore_state(w, es_config()) for w in (straight, resumed))
    assert int(a.step) == int(b.step) == int(a.es_state.generation_counter) == 4
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
                 checkpoints.keys_to_data(a), checkpoints.keys_to_data(b))
    fresh = build.make_trainer(es_config()).init(jax.random.key(es_config().seed))
    assert any(bool(jnp.any(x != y)) for x, y in zip(jax.tree.leaves(a.meta_params), jax.tree.leaves(fresh.meta_params)))
    _, params, _ = checkpoints.load_rule(os.path.join(straight, "rule"))
    jax.tree.map(np.testing.assert_array_equal, params, a.meta_params)


def metagenrl_config(steps: int = 4) -> ml_collections.ConfigDict:
    """experiments/configs/metagenrl.py:cpu at tiny sizes: 2 Pendulum agents, (8,) networks."""
    from experiments.configs import metagenrl as metagenrl_configs  # pylint: disable=g-import-not-at-top
    c = metagenrl_configs.get_config("cpu")
    c.meta.num_agents = 2
    c.rule.lstm_size, c.rule.action_layers, c.rule.action_filters = 4, 1, 2
    c.agent.hidden = (8,)
    c.agent.buffer_capacity, c.agent.batch_size, c.agent.warmup_steps = 256, 8, 20
    c.meta.sequence_batch_size, c.meta.sequence_length, c.meta.ddpg_anneal_steps = 2, 5, 4
    c.meta.steps, c.log_every, c.checkpoint_every = steps, 1, 2
    c.meta.agent_lifetime = 4  # agent 0 replaced after step 2 (at the resume point), agent 1 after 4
    return c


@pytest.mark.slow  # three launcher runs, ~35 s quiet: beyond the default suite's budget
def test_metagenrl_exact_resume_is_bit_identical(tmp_path):
    """MetaGenRL through the launcher: 2 meta-steps, save, restore, 2 more == 4 straight, bit for
    bit (α, its Adam state, every agent with its replay buffer and key, agent resets included);
    α moved."""
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train.train(metagenrl_config(steps=4), straight)
    train.train(metagenrl_config(steps=2), resumed)
    train.train(metagenrl_config(steps=4), resumed)
    a, b = (_restore_state(w, metagenrl_config()) for w in (straight, resumed))
    assert int(a.step) == int(b.step) == 4
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
                 checkpoints.keys_to_data(a), checkpoints.keys_to_data(b))
    fresh = build.make_trainer(metagenrl_config()).init(jax.random.key(metagenrl_config().seed))
    assert any(bool(jnp.any(x != y)) for x, y in zip(jax.tree.leaves(a.meta_params),
                                                    jax.tree.leaves(fresh.meta_params)))
    _, alpha, _ = checkpoints.load_rule(os.path.join(straight, "rule"))
    jax.tree.map(np.testing.assert_array_equal, alpha, a.meta_params)


def test_resume_with_different_config_is_refused(tmp_path):
    workdir = str(tmp_path / "run")
    train.train(tiny_config(steps=2), workdir)
    other = tiny_config(steps=4)
    other.meta.num_envs = 8
    with pytest.raises(ValueError, match="meta.num_envs"):
        train.train(other, workdir)


def test_corrupt_and_missing_checkpoints(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        evaluate.rule_from_checkpoint(str(tmp_path / "nothing"))
    workdir = str(tmp_path / "run")
    train.train(tiny_config(steps=2), workdir)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    # Corrupt every data file of the only checkpoint.
    for root, _, files in os.walk(os.path.join(ckpt_dir, "2", "state")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    with pytest.raises(checkpoints.CheckpointError, match="checkpoint step 2 in .* is corrupt"):
        evaluate.rule_from_checkpoint(ckpt_dir)
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint 7"):
        evaluate.rule_from_checkpoint(ckpt_dir, step=7)
    shutil.rmtree(os.path.join(workdir, "rule"))
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        checkpoints.load_rule(os.path.join(workdir, "rule"))


def test_non_finite_state_is_never_saved_over_a_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    train.train(tiny_config(steps=2), workdir)
    config = tiny_config()
    ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
    state = _restore_state(workdir, config)
    bad = state.replace(meta_params=jax.tree.map(lambda x: x * jnp.nan, state.meta_params))
    with pytest.raises(checkpoints.CheckpointError, match="non-finite"):
        ckpt.save(3, bad, checkpoints.config_to_json(config), check_finite=bad.meta_params)
    assert ckpt.all_steps() == [2]
    ckpt.close()


@pytest.mark.parametrize("override, message", [
    ("meta.tasks='tabular/nope'", "tabular/nope"),
    ("meta.num_updates=500", "more than the lifetime"),
    ("rule.hidden_size=0", "hidden_size"),
    ("meta.learning_rate=-0.1", "learning_rate"),
    ("meta.remat='partial'", "remat must be one of"),
    ("meta.lifetimes_per_chunk=3", "lifetimes_per_chunk=3 does not divide"),
])
def test_bad_config_values_fail_before_work(tmp_path, override, message):
    config = tiny_config()
    key, value = override.split("=", 1)
    section, name = key.split(".")
    config[section][name] = eval(value)  # pylint: disable=eval-used
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train.train(config, str(workdir))
    assert not (workdir / "checkpoints").exists()


def _launch(args, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "launch.train", "--config", "experiments/configs/lpg.py:cpu",
         "--compilation_cache=", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_launcher_rejects_unknown_config_key(tmp_path):
    result = _launch(["--workdir", str(tmp_path / "run"), "--config.meta.no_such_key=3"], tmp_path)
    assert result.returncode != 0
    assert "no_such_key" in result.stderr
    assert not (tmp_path / "run").exists()


def test_launcher_two_step_smoke_run(tmp_path):
    workdir = tmp_path / "run"
    args = ["--workdir", str(workdir), "--config.meta.steps=2", "--config.log_every=1",
            "--config.rule.hidden_size=8", "--config.meta.tasks=chain/short",
            "--config.meta.lifetimes_per_task=2", "--config.meta.num_envs=4",
            "--config.meta.unroll_length=5"]
    result = _launch(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (workdir / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("step,")
    assert (workdir / "checkpoints" / "2").is_dir()
    assert (workdir / "rule" / "meta_params.msgpack").is_file()


@pytest.mark.slow  # 30 s; the launcher's normal path stays covered by the smoke run
def test_launcher_debug_mode_runs_tiny_shapes(tmp_path):
    workdir = tmp_path / "debug"
    result = _launch(["--workdir", str(workdir), "--config.debug", "--config.meta.tasks=chain/short"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "debug mode" in result.stderr
    lines = (workdir / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 3  # header + 3 meta-steps
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["rule"]["hidden_size"] == 8 and saved["meta"]["num_envs"] == 2


@pytest.mark.parametrize("args, message", [
    (["--process_id=0"], "need --multihost"),
    (["--multihost", "--process_id=0"], "go together"),
    (["--multihost", "--coordinator_address=localhost:1", "--num_processes=2", "--process_id=2"],
     "--process_id=2 must be in"),
])
def test_launcher_rejects_bad_multihost_flags(tmp_path, args, message):
    result = _launch(["--workdir", str(tmp_path / "run"), *args], tmp_path)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "run").exists()
