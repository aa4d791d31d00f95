"""The population sharded over devices and processes gives the same meta-training as one device.

Each test runs subprocesses: the device count is fixed when a process starts JAX
(XLA_FLAGS=--xla_force_host_platform_device_count=N), and multi-process runs need
jax.distributed. The subprocess side is tests/launch/sharded_worker.py; the config is
tests/launch/tiny_config.py (2 groups × 8 lifetimes, resets and bandit records within 4 steps).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(REPO, "tests", "launch", "sharded_worker.py")
TINY_CONFIG = os.path.join(REPO, "tests", "launch", "tiny_config.py")
TIMEOUT = 600


def _env(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _worker(args, devices: int) -> None:
    _check(subprocess.run([sys.executable, WORKER, *args], env=_env(devices), cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT))


def _runs(path: str) -> dict[str, dict[str, np.ndarray]]:
    data = np.load(path)
    runs = {}
    for key in data.files:
        run, leaf = key.split("|", 1)
        runs.setdefault(run, {})[leaf] = data[key]
    return runs


def _assert_same_state(a: dict, b: dict) -> None:
    """Integer leaves (steps, arms, counts, keys) exactly; float leaves up to summation order."""
    assert a.keys() == b.keys()
    for name in a:
        if np.issubdtype(a[name].dtype, np.floating):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _bandit_records(state: dict) -> int:
    return int(sum(v.sum() for k, v in state.items() if k.endswith(".bandit.counts")))


# slow since session 8 (118 s on the AMD CPU); the ES 1-vs-4 test below stays in the default suite as
# the multi-device stand-in (same ShardedProgram scaffolding, same launcher path).
@pytest.mark.slow
def test_one_and_four_devices_give_the_same_meta_training(tmp_path):
    out = str(tmp_path / "devices.npz")
    _worker(["devices", out], devices=4)
    with open(out + ".json") as f:
        facts = json.load(f)
    runs = _runs(out)
    # The 4-device runs really are sharded: 2 of each group's 8 lifetimes per device, η replicated.
    for name in ("four", "four_chunked"):
        assert facts[name]["lifetime_shard_rows"] == [2, 2, 2, 2], facts[name]
        assert facts[name]["meta_params_replicated"]
    assert facts["one"]["lifetime_shard_rows"] == [8]
    # No recompilation across meta-steps.
    assert all(facts[name]["compiles_during_steps"] == 0 for name in ("one", "four", "four_chunked")), facts
    # Resets fed the bandit (the all-gather path ran), and η moved.
    assert _bandit_records(runs["one"]) > 0
    # Same η, optimiser state, lifetimes, bandits and key on 1 device, 4 devices, and 4 devices
    # evaluating their lifetimes one at a time (lifetimes_per_chunk=1).
    _assert_same_state(runs["one"], runs["four"])
    _assert_same_state(runs["one"], runs["four_chunked"])
    # Lifetimes that do not split over the devices are refused, naming the values.
    assert "lifetimes_per_task=6" in facts["refusal"] and "4 devices" in facts["refusal"], facts["refusal"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _train_cmd(workdir: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "launch.train", "--config", TINY_CONFIG, "--workdir", workdir,
            "--compilation_cache", "", *extra]


def test_es_on_one_and_four_devices_gives_the_same_meta_params(tmp_path):
    """ES candidates split over 4 devices (2 each, and in chunks of 1): the same η, ES state
    (mean, σ, Adam moments, generation) and key as on 1 device, with η replicated and moving."""
    out = str(tmp_path / "es_devices.npz")
    _worker(["es_devices", out], devices=4)
    with open(out + ".json") as f:
        facts = json.load(f)
    runs = _runs(out)
    assert all(facts[name]["compiles_during_steps"] == 0 for name in facts), facts
    assert all(facts[name]["meta_params_replicated"] for name in facts), facts
    _assert_same_state(runs["one"], runs["four"])
    _assert_same_state(runs["one"], runs["four_chunked"])
    generation = [k for k in runs["one"] if k.endswith("generation_counter")]
    assert generation and int(runs["one"][generation[0]]) == 4  # tiny_config.STEPS generations
    assert all(facts[name]["step_norm"] > 0 for name in facts), facts  # η moved in the last generation


@pytest.mark.slow  # 78 s of the default suite's 15-min budget; run with -m slow (BUILD_NOTES.md)
def test_two_processes_match_one_and_their_checkpoint_restores_in_one_process(tmp_path):
    two, one = str(tmp_path / "two_processes"), str(tmp_path / "one_process")
    port = _free_port()
    procs = [
        subprocess.Popen(
            _train_cmd(two, "--multihost", f"--coordinator_address=localhost:{port}",
                       "--num_processes=2", f"--process_id={i}"),
            env=_env(2), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for p in procs:
        stdout, stderr = p.communicate(timeout=TIMEOUT)
        _check(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    _check(subprocess.run(_train_cmd(one), env=_env(1), cwd=REPO, capture_output=True, text=True,
                          timeout=TIMEOUT))
    # Only process 0 wrote logs; each process wrote its own shards of the checkpoint (orbax's
    # OCDBT layout keeps one directory per writing process).
    with open(os.path.join(two, "metrics.csv")) as f:
        assert len(f.read().splitlines()) == 1 + 4  # header + one row per meta-step, no duplicates
    state_dir = os.path.join(two, "checkpoints", "4", "state")
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(state_dir)), os.listdir(state_dir)

    # Both checkpoints restore in one single-device process and hold the same state.
    out = str(tmp_path / "restored.npz")
    _worker(["restore", out, two, one], devices=1)
    restored = _runs(out)
    assert int(restored["0"][".step"]) == int(restored["1"][".step"]) == 4
    assert _bandit_records(restored["1"]) > 0
    _assert_same_state(restored["0"], restored["1"])


def test_launcher_refuses_lifetimes_that_do_not_split_over_devices(tmp_path):
    workdir = str(tmp_path / "bad")
    proc = subprocess.run(_train_cmd(workdir, "--config.meta.lifetimes_per_task=6"), env=_env(4),
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert "lifetimes_per_task=6" in proc.stderr and "4 devices" in proc.stderr, proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))
