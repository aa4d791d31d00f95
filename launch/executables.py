"""Compiled meta-training executables kept on disk, so a warm start skips trace, lower and compile.

JAX's persistent compilation cache (`jax_compilation_cache_dir`) saves the XLA compile, but its
key is the lowered program, so every start still traces and lowers the meta-step in Python
(~3 s for the CPU default). On top of it we store the compiled executables themselves with
`jax.experimental.serialize_executable`, keyed by everything that determines the program:

  * the experiment config (JSON), the function's name and the device mesh (platform, kind, ids,
    process index and count), XLA_FLAGS and the jax config options that change lowering;
  * the source of this project's packages (lpg/, envs/, launch/) and the versions of the libraries
    that are traced into the program (jax, jaxlib, flax, optax, chex, rlax, gymnax, numpy).

Change any of these and the key changes, so a stale executable is never loaded. A file that does
not load (truncated, other jaxlib) is ignored and replaced. Files are written atomically. The
files are pickles: only point the cache at a directory you own.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
from typing import Any, Callable

from absl import logging
import jax
from jax.experimental import serialize_executable

_PACKAGES = ("lpg", "envs", "launch")
_LIBRARIES = ("jax", "jaxlib", "flax", "optax", "chex", "rlax", "gymnax", "numpy")
_JAX_OPTIONS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_threefry_partitionable",
                "jax_disable_jit", "jax_debug_nans")


@functools.cache
def _code_digest() -> str:
    """sha256 over this project's package sources and the traced libraries' versions."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for package in _PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    digest.update(os.path.relpath(path, root).encode())
                    with open(path, "rb") as f:
                        digest.update(f.read())
    for library in _LIBRARIES:
        try:
            digest.update(f"{library}=={importlib.metadata.version(library)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{library} missing".encode())
    return digest.hexdigest()


def cache_key(name: str, config: dict, mesh: jax.sharding.Mesh) -> str:
    """The key of executable `name` compiled for `config` on `mesh` in this process."""
    fields = {
        "name": name,
        "config": config,
        "devices": [(d.platform, d.device_kind, d.id, d.process_index) for d in mesh.devices.flat],
        "process": (jax.process_index(), jax.process_count()),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_options": {o: str(getattr(jax.config, o, None)) for o in _JAX_OPTIONS},
        "code": _code_digest(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load_or_compile(directory: str, name: str, config: dict, mesh, compile_fn: Callable[[], Any]):
    """`compile_fn()` (a jax Compiled), or the same executable from `directory` if it is there.

    directory: '' disables the cache. Returns (compiled, loaded: bool). Multi-process programs
    always compile (JAX's persistent cache still applies): serialising an executable that spans
    processes was not tested here.
    """
    if not directory or jax.process_count() > 1:
        return compile_fn(), False
    path = os.path.join(directory, f"{name}-{cache_key(name, config, mesh)}.jaxexe")
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                payload, in_tree, out_tree = pickle.load(f)
            return serialize_executable.deserialize_and_load(payload, in_tree, out_tree), True
        except Exception as err:  # pylint: disable=broad-except  # any bad file: recompile
            logging.warning("ignoring unloadable cached executable %s: %s", path, err)
    compiled = compile_fn()
    try:
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            pickle.dump(serialize_executable.serialize(compiled), f)
        os.replace(tmp, path)
    except Exception as err:  # pylint: disable=broad-except  # caching is an optimisation only
        logging.warning("could not cache executable %s: %s", path, err)
    return compiled, False
