"""The on-disk executable cache (launch/executables.py): hits, misses on any change, bad files."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from launch import executables
from lpg.meta import sharding


def _compile(scale):
    return lambda: jax.jit(lambda x: x * scale).lower(jnp.ones(3)).compile()


def test_cache_hit_miss_and_corrupt_file(tmp_path):
    mesh = sharding.population_mesh()
    directory = str(tmp_path / "exe")
    config = {"meta.num_envs": 4}
    first, loaded = executables.load_or_compile(directory, "f", config, mesh, _compile(2.0))
    assert not loaded and len(os.listdir(directory)) == 1
    again, loaded = executables.load_or_compile(directory, "f", config, mesh, _compile(99.0))
    assert loaded  # the stored executable, not the new compile_fn
    np.testing.assert_array_equal(again(jnp.arange(3.0)), first(jnp.arange(3.0)))
    # Another config or name is another key.
    _, loaded = executables.load_or_compile(directory, "f", {"meta.num_envs": 8}, mesh, _compile(3.0))
    assert not loaded
    assert executables.cache_key("f", config, mesh) != executables.cache_key("g", config, mesh)
    # A corrupt file is ignored and replaced.
    path = os.path.join(directory, f"f-{executables.cache_key('f', config, mesh)}.jaxexe")
    with open(path, "wb") as f:
        f.write(b"not an executable")
    fresh, loaded = executables.load_or_compile(directory, "f", config, mesh, _compile(5.0))
    assert not loaded
    np.testing.assert_array_equal(fresh(jnp.ones(3)), 5.0 * np.ones(3))
    _, loaded = executables.load_or_compile(directory, "f", config, mesh, _compile(5.0))
    assert loaded
    # '' disables the cache.
    _, loaded = executables.load_or_compile("", "f", config, mesh, _compile(2.0))
    assert not loaded
