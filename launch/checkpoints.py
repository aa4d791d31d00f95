"""Orbax checkpoints of a whole training state plus the config that produced it.

Layout: <workdir>/checkpoints/<step>/{state,config}. Orbax writes each step to a temporary
directory and renames it when complete, so an interrupted or failed save never replaces the last
good checkpoint; we also refuse to save a state whose meta-parameters are not finite.
Typed PRNG keys are stored as their raw key data and re-wrapped on restore.

Multi-host: every process calls `save`/`restore` (collectively); each writes and reads only the
shards of the population it holds, process 0 writes the metadata and the config. A checkpoint
restores onto any mesh (e.g. one written by 2 processes × 2 devices restores in 1 process).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def keys_to_data(tree):
    """Typed PRNG keys → uint32 key data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def data_to_keys(tree, like):
    """Inverse of `keys_to_data`, using `like` (same structure) to know which leaves were keys."""
    return jax.tree.map(lambda x, l: jax.random.wrap_key_data(x) if _is_key(l) else x, tree, like)


def _abstract(tree):
    """ShapeDtypeStructs of `tree` (concrete or abstract), with key leaves as key data.

    Each leaf keeps the sharding of `tree`'s leaf (if it has one), so orbax restores every array
    straight onto the current mesh — whatever mesh or process count wrote the checkpoint.
    """
    abstract = jax.eval_shape(keys_to_data, tree)
    return jax.tree.map(
        lambda a, x: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(x, "sharding", None)),
        abstract, tree)


class CheckpointError(RuntimeError):
    pass


class Checkpointer:
    """Saves/restores (state, config dict) under `directory` (see module docstring)."""

    def __init__(self, directory: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=False),
            item_names=("state", "config"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, config: dict, *, check_finite: Any = None) -> None:
        """Writes checkpoint `step`. `check_finite`: a sub-tree that must be all finite."""
        if check_finite is not None:
            for leaf in jax.tree.leaves(check_finite):
                # np on the host copy: the checked leaves (η) are replicated on every process.
                if jnp.issubdtype(leaf.dtype, jnp.floating) and not np.all(np.isfinite(jax.device_get(leaf))):
                    raise CheckpointError(
                        f"refusing to save step {step}: non-finite values in the state; the last "
                        f"good checkpoint ({self.latest_step()}) is kept")
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(keys_to_data(state)),
            config=ocp.args.JsonSave(config),
        ))
        self._manager.wait_until_finished()

    def restore_config(self, step: int | None = None) -> dict:
        step = self._resolve(step)
        out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return dict(out["config"])

    def restore(self, like_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, config) with the structure/shapes of `like_state` (may be abstract)."""
        step = self._resolve(step)
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(like_state)),
                config=ocp.args.JsonRestore(),
            ))
        except Exception as err:  # orbax raises many types for corrupt/mismatched files
            raise CheckpointError(
                f"could not restore checkpoint step {step} from {self.directory}: {err}") from err
        return data_to_keys(out["state"], like_state), dict(out["config"])

    def _resolve(self, step):
        if step is None:
            step = self.latest_step()
        if step is None or step not in self.all_steps():
            raise CheckpointError(
                f"no checkpoint {'' if step is None else step} in {self.directory}; "
                f"available steps: {self.all_steps()}")
        return step

    def close(self):
        self._manager.close()


def config_to_json(config) -> dict:
    """A ConfigDict as a plain JSON-able dict."""
    return json.loads(config.to_json())


RULE_PARAMS_FILE = "meta_params.msgpack"
RULE_CONFIG_FILE = "rule.json"


def save_rule(directory: str, meta_params: Any, rule_config: dict, provenance: dict | None = None) -> None:
    """Writes a frozen rule (η + its rule config) as a small standalone directory."""
    from flax import serialization  # pylint: disable=g-import-not-at-top

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, RULE_PARAMS_FILE), "wb") as f:
        f.write(serialization.to_bytes(jax.device_get(meta_params)))
    with open(os.path.join(directory, RULE_CONFIG_FILE), "w") as f:
        json.dump({"rule": rule_config, "provenance": provenance or {}}, f, indent=2)


def load_rule(directory: str, make_rule) -> tuple[Any, Any, dict]:
    """Reads a rule saved by `save_rule`; `make_rule(rule_config_dict)` builds the rule object.

    Returns (rule, meta_params, provenance).
    """
    from flax import serialization  # pylint: disable=g-import-not-at-top

    params_path = os.path.join(directory, RULE_PARAMS_FILE)
    config_path = os.path.join(directory, RULE_CONFIG_FILE)
    for path in (params_path, config_path):
        if not os.path.isfile(path):
            raise CheckpointError(f"rule file {path} does not exist (expected {RULE_PARAMS_FILE} "
                                  f"and {RULE_CONFIG_FILE} in {directory})")
    try:
        with open(config_path) as f:
            saved = json.load(f)
        rule = make_rule(saved["rule"])
        template = rule.init_params(jax.random.key(0))
        with open(params_path, "rb") as f:
            meta_params = serialization.from_bytes(template, f.read())
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"corrupt or incompatible rule in {directory}: {err}") from err
    return rule, meta_params, saved.get("provenance", {})
