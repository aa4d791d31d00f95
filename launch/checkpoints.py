"""Orbax checkpoints of a whole training state plus the config that produced it.

Layout: <workdir>/checkpoints/<step>/{state,config,manifest.sha256.json}. Orbax writes each step to
a temporary directory and renames it when complete, so an interrupted or failed save never
replaces the last good checkpoint; we also refuse to save a state whose meta-parameters are not
finite. Typed PRNG keys are stored as their raw key data and re-wrapped on restore.

Integrity: after orbax finishes a step, `manifest.sha256.json` records the relative path, size
and SHA-256 of every file of the step. Every restore first checks the files against it (a
missing, extra, resized or changed file is a `CheckpointError` naming the step and the file),
because orbax itself reads damaged array chunks without complaint. A step without a manifest
(written before manifests existed, or a run killed between orbax's rename and the manifest) is
refused too unless the Checkpointer was built with `allow_unverified=True`.

Multi-host: every process calls `save`/`restore` (collectively); each writes and reads only the
shards of the population it holds, process 0 writes the metadata, the config and (after a
barrier, so every process's files are complete) the manifest. Every process verifies the whole
step before restoring (the checkpoint directory is on storage every host sees). A checkpoint
restores onto any mesh (e.g. one written by 2 processes × 2 devices restores in 1 process).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lpg import rules


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
    """A checkpoint that cannot be saved, found, verified or restored (the message says which)."""


class UnverifiedCheckpointError(CheckpointError):
    """A step without a manifest: its files cannot be checked (see `Checkpointer(allow_unverified)`)."""


MANIFEST_FILE = "manifest.sha256.json"
_MANIFEST_FORMAT = 1
_HASH_CHUNK_BYTES = 1 << 20
_PROBLEMS_SHOWN = 3


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks: checkpoint files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(directory: str) -> list[str]:
    """Relative '/'-separated paths of every file under `directory` except the manifest (sorted)."""
    paths = []
    for root, _, names in os.walk(directory):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
            if rel not in (MANIFEST_FILE, MANIFEST_FILE + ".tmp"):
                paths.append(rel)
    return sorted(paths)


def write_manifest(step_dir: str, step: int) -> None:
    """Writes `step_dir`/manifest.sha256.json: path → {size, sha256} of every other file.

    Atomic (a temporary file renamed over the target), so a crash never leaves half a manifest.
    """
    files = {}
    for rel in _files_under(step_dir):
        path = os.path.join(step_dir, rel)
        files[rel] = {"size": os.path.getsize(path), "sha256": file_sha256(path)}
    target = os.path.join(step_dir, MANIFEST_FILE)
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"format": _MANIFEST_FORMAT, "step": step, "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def _read_manifest(step_dir: str) -> dict[str, dict] | None:
    """The manifest's {path: {size, sha256}} (None if there is none); CheckpointError if unreadable."""
    path = os.path.join(step_dir, MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            files = json.load(f)["files"]
        if not all(isinstance(e["size"], int) and isinstance(e["sha256"], str) for e in files.values()):
            raise ValueError("entries must hold an int size and a str sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{MANIFEST_FILE} is unreadable ({err})") from err
    return files


def manifest_problems(step_dir: str) -> list[str]:
    """What differs between the files under `step_dir` and its manifest ([] if intact).

    Raises UnverifiedCheckpointError if there is no manifest, CheckpointError if it is unreadable.
    Sizes are compared before any file is hashed, so truncation is reported without reading data.
    """
    expected = _read_manifest(step_dir)
    if expected is None:
        raise UnverifiedCheckpointError(f"no {MANIFEST_FILE}")
    on_disk = set(_files_under(step_dir))
    problems = [f"{rel} is missing" for rel in sorted(expected) if rel not in on_disk]
    problems += [f"{rel} is not in the manifest" for rel in sorted(on_disk - set(expected))]
    present = [rel for rel in sorted(expected) if rel in on_disk]
    sizes = {rel: os.path.getsize(os.path.join(step_dir, rel)) for rel in present}
    problems += [f"{rel} has {sizes[rel]} bytes, the manifest says {expected[rel]['size']}"
                 for rel in present if sizes[rel] != expected[rel]["size"]]
    problems += [f"{rel} sha256 mismatch" for rel in present
                 if sizes[rel] == expected[rel]["size"]
                 and file_sha256(os.path.join(step_dir, rel)) != expected[rel]["sha256"]]
    return problems


def _summarise(problems: list[str]) -> str:
    shown = "; ".join(problems[:_PROBLEMS_SHOWN])
    more = len(problems) - _PROBLEMS_SHOWN
    return shown + (f" (and {more} more)" if more > 0 else "")


def _sync(name: str) -> None:
    """A barrier across processes (nothing to wait for in a single-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


class Checkpointer:
    """Saves/restores (state, config dict) under `directory` (see module docstring).

    allow_unverified: accept (with a warning) steps that have no manifest; files that differ from
      a manifest are never accepted.
    """

    def __init__(self, directory: str, max_to_keep: int = 3, allow_unverified: bool = False):
        self.directory = os.path.abspath(directory)
        self.allow_unverified = allow_unverified
        self._verified: set[int] = set()  # steps checked against their manifest by this object
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

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, config: dict, *, check_finite: Any = None) -> None:
        """Writes checkpoint `step` and its manifest. `check_finite`: a sub-tree that must be all finite."""
        if check_finite is not None:
            for leaf in jax.tree.leaves(check_finite):
                # np on the host copy: the checked leaves (η) are replicated on every process.
                if jnp.issubdtype(leaf.dtype, jnp.floating) and not np.all(np.isfinite(jax.device_get(leaf))):
                    raise CheckpointError(
                        f"refusing to save step {step}: non-finite values in the state; the last "
                        f"good checkpoint ({self.latest_step()}) is kept")
        saved = self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(keys_to_data(state)),
            config=ocp.args.JsonSave(config),
        ))
        self._manager.wait_until_finished()
        if not saved:  # orbax skips, silently, any step not above the latest one
            raise CheckpointError(f"checkpoint step {step} was not saved: {self.directory} already "
                                  f"holds the later step {self.latest_step()}")
        # Every process's shards are on disk before process 0 hashes them, and the manifest is
        # on disk before any process goes on.
        _sync(f"lpg_checkpoint_manifest_start_{step}")
        if jax.process_index() == 0:
            write_manifest(self.step_dir(step), step)
        _sync(f"lpg_checkpoint_manifest_done_{step}")
        self._verified.add(step)

    def problems(self, step: int) -> list[str]:
        """What is wrong with step `step`'s files ([] if they match its manifest).

        Raises UnverifiedCheckpointError if the step has no manifest.
        """
        try:
            return manifest_problems(self.step_dir(step))
        except UnverifiedCheckpointError:
            raise
        except CheckpointError as err:  # an unreadable manifest
            return [str(err)]

    def is_intact(self, step: int) -> bool:
        """Whether `step`'s files match its manifest (a step without one is not intact)."""
        if step in self._verified:
            return True
        try:
            intact = not self.problems(step)
        except UnverifiedCheckpointError:
            return False
        if intact:
            self._verified.add(step)
        return intact

    def intact_steps(self) -> list[int]:
        """The steps whose files match their manifest, oldest first."""
        return [step for step in self.all_steps() if self.is_intact(step)]

    def verify(self, step: int) -> None:
        """Raises CheckpointError unless `step`'s files match its manifest (the error names the
        step, the directory, the first bad files and the earlier intact steps).

        A step without a manifest raises UnverifiedCheckpointError, unless `allow_unverified`.
        """
        if step in self._verified:
            return
        try:
            problems = self.problems(step)
        except UnverifiedCheckpointError:
            if self.allow_unverified:
                logging.warning("checkpoint step %d in %s has no %s: restoring it unverified "
                                "(allow_unverified)", step, self.directory, MANIFEST_FILE)
                return
            raise UnverifiedCheckpointError(
                f"checkpoint step {step} in {self.directory} has no {MANIFEST_FILE}, so its files "
                f"cannot be verified (it was written before checkpoints had manifests, or the run "
                f"stopped while saving it); earlier intact steps: {self._intact_before(step)}") from None
        if problems:
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} is corrupt: {_summarise(problems)}; "
                f"earlier intact steps: {self._intact_before(step)}")
        self._verified.add(step)

    def _intact_before(self, step: int) -> list[int]:
        return [s for s in self.all_steps() if s < step and self.is_intact(s)]

    def set_aside(self, step: int, reason: str) -> str:
        """Moves step `step` out of the steps orbax manages, to <directory>/<reason>-<step>-<time>
        (nothing is deleted); returns the new path. Every process calls this (collectively)."""
        target = os.path.join(self.directory, f"{reason}-{step}-{time.strftime('%Y%m%dT%H%M%S')}")
        _sync(f"lpg_checkpoint_set_aside_start_{step}")
        if jax.process_index() == 0:
            os.rename(self.step_dir(step), target)
            logging.warning("moved checkpoint step %d aside to %s", step, target)
        _sync(f"lpg_checkpoint_set_aside_done_{step}")
        self._manager.reload()
        self._verified.discard(step)
        return target

    def restore_config(self, step: int | None = None) -> dict:
        """The config saved with `step` (default: the latest), after verifying the step."""
        step = self._resolve(step)
        self.verify(step)
        out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return dict(out["config"])

    def restore(self, like_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, config) with the structure/shapes of `like_state` (may be abstract),
        after verifying the step's files against its manifest."""
        step = self._resolve(step)
        self.verify(step)
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


def save_rule(directory: str, rule, meta_params: Any, provenance: dict | None = None) -> None:
    """Writes a frozen rule as a small standalone directory: η (msgpack) and rule.json with the
    rule's kind (`rule.KIND`), its config (`rule.config()`) and provenance."""
    from flax import serialization  # pylint: disable=g-import-not-at-top

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, RULE_PARAMS_FILE), "wb") as f:
        f.write(serialization.to_bytes(jax.device_get(meta_params)))
    with open(os.path.join(directory, RULE_CONFIG_FILE), "w") as f:
        json.dump({"kind": rule.KIND, "rule": rule.config(), "provenance": provenance or {}}, f, indent=2)


def make_saved(kind: str, config: Any = None):
    """The update rule (`lpg.rules.make_rule`) or learned objective of a saved `kind`.

    Learned objectives are not `UpdateRule`s (MetaGenRL's L_α trains off-policy TD3 agents:
    lpg/meta/metagenrl.py, lpg/offpolicy_evaluation.py), so they are not in `lpg.rules.RULES`;
    imported here, not there, because lpg.rules.metagenrl needs lpg.agent, which needs lpg.rules.
    """
    from lpg.rules import metagenrl  # pylint: disable=g-import-not-at-top

    if kind != metagenrl.Objective.KIND:
        return rules.make_rule(kind, config)
    try:
        return metagenrl.Objective(**dict(config or {}))
    except TypeError as err:
        raise ValueError(f"bad configuration for objective {kind!r}: {err}") from err


def load_rule(directory: str) -> tuple[Any, Any, dict]:
    """Reads a rule saved by `save_rule` and rebuilds its class from the recorded kind
    (`make_saved`: an update rule, or a learned objective such as MetaGenRL's). Returns
    (rule, meta_params, provenance).

    A rule.json without "kind" predates rule kinds, when LPG was the only saved rule: it loads as
    LPG.
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
        rule = make_saved(saved.get("kind", "lpg"), saved["rule"])
        template = rule.init_params(jax.random.key(0))
        with open(params_path, "rb") as f:
            meta_params = serialization.from_bytes(template, f.read())
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"corrupt or incompatible rule in {directory}: {err}") from err
    return rule, meta_params, saved.get("provenance", {})
