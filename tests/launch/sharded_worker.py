"""Subprocess half of tests/launch/test_sharding.py (needs its own XLA_FLAGS / jax.distributed).

    python tests/launch/sharded_worker.py devices OUT.npz     # in a process with 4 CPU devices
    python tests/launch/sharded_worker.py restore OUT.npz WORKDIR...

`devices`: N meta-steps of the same config on a 1-device mesh, a 4-device mesh, and 4 devices
with lifetimes_per_chunk=1; saves every state leaf of each run, plus facts about the layout.
`restore`: restores each WORKDIR's latest checkpoint (written by any mesh / process count) onto
this process's devices and saves the leaves.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.configs import lpg as lpg_configs  # pylint: disable=g-import-not-at-top
from launch import build
from launch import checkpoints
from launch import eval_report
from lpg.meta import sharding
from tests.launch import tiny_config

NUM_STEPS = tiny_config.STEPS
COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: COMPILES.append(event) if event == "/jax/core/compile/backend_compile_duration" else None)


def leaves(state) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(checkpoints.keys_to_data(state))
    return {jax.tree_util.keystr(path): np.asarray(jax.device_get(x)) for path, x in flat}


def run(mesh, chunk: int = 0, estimator: str = "backprop"):
    c = tiny_config.get_config()
    c.meta.lifetimes_per_chunk = chunk
    if estimator == "es":
        c.meta.estimator = "es"
        c.meta.es.population = 8  # 2 antithetic pairs per device on 4 devices
    trainer = build.make_trainer(c, mesh)
    state = trainer.jit_init()(jax.random.key(int(c.seed)))
    step = trainer.compiled_step()  # what launch/train_loop.py runs
    compiles_before = len(COMPILES)
    for _ in range(NUM_STEPS):
        state, metrics = step(state)
    jax.block_until_ready(state)
    return state, metrics, len(COMPILES) - compiles_before


def devices(out: str) -> None:
    assert jax.device_count() == 4, jax.devices()
    facts = {}
    results = {}
    for name, mesh, chunk in (("one", sharding.population_mesh(jax.devices()[:1]), 0),
                              ("four", sharding.population_mesh(), 0),
                              ("four_chunked", sharding.population_mesh(), 1)):
        state, metrics, compiles = run(mesh, chunk)
        results[name] = leaves(state)
        lifetimes_leaf = jax.tree.leaves(state.groups[0].lifetimes)[0]
        facts[name] = {
            "compiles_during_steps": compiles,
            "lifetime_shards": len(lifetimes_leaf.addressable_shards),
            "lifetime_shard_rows": [int(s.data.shape[0]) for s in lifetimes_leaf.addressable_shards],
            "meta_params_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state.meta_params)),
            "meta_loss": float(metrics["meta_loss"]),
        }
    # Lifetimes that do not split over the devices are refused before any work.
    bad = tiny_config.get_config()
    bad.meta.lifetimes_per_task = 6
    try:
        build.make_trainer(bad, sharding.population_mesh())
        facts["refusal"] = None
    except ValueError as err:
        facts["refusal"] = str(err)
    np.savez(out, **{f"{run_name}|{k}": v for run_name, d in results.items() for k, v in d.items()})
    with open(out + ".json", "w") as f:
        json.dump(facts, f)


def es_devices(out: str) -> None:
    """`devices` for the ES estimator: candidates split over 1 / 4 devices (and in chunks of 1)."""
    assert jax.device_count() == 4, jax.devices()
    facts, results = {}, {}
    for name, mesh, chunk in (("one", sharding.population_mesh(jax.devices()[:1]), 0),
                              ("four", sharding.population_mesh(), 0),
                              ("four_chunked", sharding.population_mesh(), 1)):
        state, metrics, compiles = run(mesh, chunk, estimator="es")
        results[name] = leaves(state)
        facts[name] = {
            "compiles_during_steps": compiles,
            "meta_params_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state.meta_params)),
            "meta_loss": float(metrics["meta_loss"]),
            "step_norm": float(metrics["step_norm"]),
        }
    np.savez(out, **{f"{run_name}|{k}": v for run_name, d in results.items() for k, v in d.items()})
    with open(out + ".json", "w") as f:
        json.dump(facts, f)


def restore(out: str, *workdirs: str) -> None:
    trainer = build.make_trainer(tiny_config.get_config(), sharding.population_mesh())
    arrays = {}
    for i, workdir in enumerate(workdirs):
        ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
        try:
            state, _ = ckpt.restore(trainer.abstract_state())
        finally:
            ckpt.close()
        # What launch.evaluate does: η alone, onto this process's single device (a failure
        # here exits non-zero and fails the calling test).
        _, meta_params, _ = eval_report.rule_from_checkpoint(os.path.join(workdir, "checkpoints"))
        for a, b in zip(jax.tree.leaves(meta_params), jax.tree.leaves(state.meta_params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        arrays.update({f"{i}|{k}": v for k, v in leaves(state).items()})
    np.savez(out, **arrays)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"devices": devices, "es_devices": es_devices, "restore": restore}[command](*args)
