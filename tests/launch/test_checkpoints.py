"""Checkpoint integrity: damaged files are caught before orbax reads them, the launcher refuses to
resume from them without touching anything, and an explicit earlier step resumes exactly.

One tiny 6-step run (checkpoints at steps 2, 4, 6) is shared; each test damages its own copy.
"""

import glob
import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest

from launch import build
from launch import checkpoints
from launch import train_loop as train
from tests.launch.test_train import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
    """A workdir with 6 meta-steps: metrics.csv and intact checkpoints 2, 4, 6."""
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    config = tiny_config(steps=6)
    assert int(config.checkpoint_every) == 2 and int(config.keep_checkpoints) >= 3
    train.train(config, workdir)
    return workdir


@pytest.fixture
def workdir(trained, tmp_path) -> str:
    """This test's own copy of the trained workdir."""
    copy = str(tmp_path / "run")
    shutil.copytree(trained, copy)
    return copy


def _ckpt_dir(workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")


def _tree_digest(directory: str) -> dict[str, str]:
    """Relative path → sha256 of every file under `directory`."""
    digest = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return digest


def _data_files(step_dir: str) -> list[str]:
    """The array data files (orbax's OCDBT 'd/' chunks) of a step, smallest first."""
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    assert files, os.listdir(step_dir)
    return sorted(files, key=os.path.getsize)


def _overwrite_middle(path: str, num_bytes: int = 64) -> None:
    """Flips every bit of `num_bytes` bytes in the middle of the file (so they surely change)."""
    size = os.path.getsize(path)
    assert size >= num_bytes, (path, size)
    offset = (size - num_bytes) // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(num_bytes)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _rel(path: str, step_dir: str) -> str:
    return os.path.relpath(path, step_dir).replace(os.sep, "/")


def _damage(step_dir: str, kind: str) -> str:
    """Damages step_dir as `kind`; returns the text the error must contain."""
    data = _data_files(step_dir)
    if kind == "largest_data_file_overwritten":
        _overwrite_middle(data[-1])
        return f"{_rel(data[-1], step_dir)} sha256 mismatch"
    if kind == "smallest_data_file_overwritten":
        _overwrite_middle(data[0])
        return f"{_rel(data[0], step_dir)} sha256 mismatch"
    if kind == "data_file_truncated":
        _truncate(data[-1])
        return f"{_rel(data[-1], step_dir)} has {os.path.getsize(data[-1])} bytes"
    if kind == "data_file_deleted":
        os.remove(data[-1])
        return f"{_rel(data[-1], step_dir)} is missing"
    if kind == "file_added":
        with open(os.path.join(step_dir, "state", "extra"), "wb") as f:
            f.write(b"x")
        return "state/extra is not in the manifest"
    if kind == "manifest_deleted":
        os.remove(os.path.join(step_dir, checkpoints.MANIFEST_FILE))
        return f"has no {checkpoints.MANIFEST_FILE}"
    raise ValueError(kind)


DAMAGE = ["largest_data_file_overwritten", "smallest_data_file_overwritten", "data_file_truncated",
          "data_file_deleted", "file_added", "manifest_deleted"]


def _abstract_state():
    return build.make_trainer(tiny_config()).abstract_state()


def _restore(workdir: str, step=None):
    ckpt = checkpoints.Checkpointer(_ckpt_dir(workdir))
    try:
        return ckpt.restore(_abstract_state(), step)[0]
    finally:
        ckpt.close()


def _assert_same_state(a, b) -> None:
    leaves_a = jax.tree.leaves(checkpoints.keys_to_data(a))
    leaves_b = jax.tree.leaves(checkpoints.keys_to_data(b))
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_intact_checkpoints_verify_and_restore(workdir):
    """No false positives; the manifest covers every file of the step with its size."""
    ckpt = checkpoints.Checkpointer(_ckpt_dir(workdir))
    try:
        assert ckpt.all_steps() == ckpt.intact_steps() == [2, 4, 6]
        for step in (2, 4, 6):
            ckpt.verify(step)
            assert ckpt.problems(step) == []
        assert ckpt.restore_config(4)["meta"]["steps"] == 6
        state, _ = ckpt.restore(_abstract_state())
    finally:
        ckpt.close()
    assert int(state.step) == 6
    step_dir = os.path.join(_ckpt_dir(workdir), "6")
    with open(os.path.join(step_dir, checkpoints.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    on_disk = {p for p in _tree_digest(step_dir) if p != checkpoints.MANIFEST_FILE}
    assert set(manifest["files"]) == on_disk
    assert manifest["step"] == 6
    for rel, entry in manifest["files"].items():
        assert entry["size"] == os.path.getsize(os.path.join(step_dir, rel))


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_latest_step_is_refused_before_any_work(workdir, kind):
    ckpt_dir = _ckpt_dir(workdir)
    expected = _damage(os.path.join(ckpt_dir, "6"), kind)
    before = _tree_digest(workdir)

    # (1) Restoring it directly names the step, the directory and the bad file.
    ckpt = checkpoints.Checkpointer(ckpt_dir)
    try:
        assert ckpt.intact_steps() == [2, 4]
        for restore in (lambda: ckpt.restore(_abstract_state()), ckpt.restore_config,
                        lambda: ckpt.verify(6)):
            with pytest.raises(checkpoints.CheckpointError) as err:
                restore()
            message = str(err.value)
            assert f"checkpoint step 6 in {os.path.abspath(ckpt_dir)}" in message, message
            assert expected in message, message
            assert "earlier intact steps: [2, 4]" in message, message
        ckpt.restore(_abstract_state(), 4)  # the earlier steps still restore
    finally:
        ckpt.close()

    # (2) The launcher refuses before any work, pointing at the intact step; nothing changes:
    # no metrics row, no checkpoint written, moved or deleted (good or damaged).
    with pytest.raises(checkpoints.CheckpointError) as err:
        train.train(tiny_config(steps=8), workdir)
    assert expected in str(err.value) and "--restore_step=4" in str(err.value), str(err.value)
    assert _tree_digest(workdir) == before


def test_explicit_restore_step_resumes_exactly_and_sets_the_damaged_step_aside(trained, workdir):
    ckpt_dir = _ckpt_dir(workdir)
    _damage(os.path.join(ckpt_dir, "6"), "largest_data_file_overwritten")
    damaged = _tree_digest(os.path.join(ckpt_dir, "6"))
    good = {step: _tree_digest(os.path.join(ckpt_dir, step)) for step in ("2", "4")}

    train.train(tiny_config(steps=6), workdir, restore_step=4)

    # Same state as the straight run to step 6 (bit for bit on CPU), now in an intact step 6.
    _assert_same_state(_restore(workdir), _restore(trained))
    # The damaged step was moved aside untouched; the good steps were not touched at all.
    aside = glob.glob(os.path.join(ckpt_dir, "corrupt-6-*"))
    assert len(aside) == 1, os.listdir(ckpt_dir)
    assert _tree_digest(aside[0]) == damaged
    assert {step: _tree_digest(os.path.join(ckpt_dir, step)) for step in ("2", "4")} == good
    ckpt = checkpoints.Checkpointer(ckpt_dir)
    try:
        assert ckpt.intact_steps() == [2, 4, 6]
    finally:
        ckpt.close()


def test_restore_step_never_trains_over_an_intact_later_step(workdir):
    ckpt_dir = _ckpt_dir(workdir)
    _damage(os.path.join(ckpt_dir, "6"), "largest_data_file_overwritten")
    before = _tree_digest(workdir)
    with pytest.raises(checkpoints.CheckpointError, match=r"later step\(s\) \[4\] .* are intact"):
        train.train(tiny_config(steps=6), workdir, restore_step=2)
    with pytest.raises(checkpoints.CheckpointError, match=r"no checkpoint 5 .* available steps: \[2, 4, 6\]"):
        train.train(tiny_config(steps=6), workdir, restore_step=5)
    with pytest.raises(checkpoints.CheckpointError, match="step 6 .* is corrupt"):
        train.train(tiny_config(steps=6), workdir, restore_step=6)
    assert _tree_digest(workdir) == before


def test_step_without_manifest_resumes_only_when_allowed(workdir):
    ckpt_dir = _ckpt_dir(workdir)
    _damage(os.path.join(ckpt_dir, "6"), "manifest_deleted")
    before = _tree_digest(workdir)
    with pytest.raises(checkpoints.UnverifiedCheckpointError, match="--allow_unverified_checkpoint"):
        train.train(tiny_config(steps=6), workdir)
    assert _tree_digest(workdir) == before
    # Accepted explicitly (its files are in fact intact): resumes from 6 and goes on; step 6 is
    # left as it was, the new step 8 has a manifest.
    unverified = _tree_digest(os.path.join(ckpt_dir, "6"))
    train.train(tiny_config(steps=8), workdir, allow_unverified_checkpoint=True)
    assert _tree_digest(os.path.join(ckpt_dir, "6")) == unverified
    ckpt = checkpoints.Checkpointer(ckpt_dir)
    try:
        assert ckpt.all_steps() == [4, 6, 8] and ckpt.intact_steps() == [4, 8]
        assert int(ckpt.restore(_abstract_state())[0].step) == 8
    finally:
        ckpt.close()


def test_save_refuses_a_step_not_after_the_latest(workdir):
    """orbax skips such a save silently; a manifest written then would vouch for the old files."""
    state = _restore(workdir, 4)
    before = _tree_digest(workdir)
    ckpt = checkpoints.Checkpointer(_ckpt_dir(workdir))
    try:
        for step in (4, 5):
            with pytest.raises(checkpoints.CheckpointError, match=f"step {step} was not saved"):
                ckpt.save(step, state, checkpoints.config_to_json(tiny_config()))
    finally:
        ckpt.close()
    assert _tree_digest(workdir) == before
