"""Counting the work of a traced computation: matmul FLOPs from its jaxpr.

XLA's `compiled.cost_analysis()["flops"]` counts the body of a while loop once, whatever its trip
count, so it undercounts a meta-step (scans over K updates, T steps and the backward LSTM) by
orders of magnitude. `matmul_flops` walks the jaxpr instead and multiplies each `scan` body by
its length, each `shard_map` body by its mesh size (global work), and takes the most expensive
branch of a `cond`. It counts only dot_general / conv work (2 FLOPs per multiply-add): the
dominant cost of LPG (the LSTM gate matmul), and the work a matmul peak is measured in. It is a
count of the program as written, before XLA's simplifications, so dead code (little here) would
be included.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
from jax.extend import core as jex_core


def _dot_general_flops(eqn) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs_shape = eqn.invars[0].aval.shape
    out_shape = eqn.outvars[0].aval.shape
    contracted = math.prod(lhs_shape[d] for d in lhs_contract)
    return 2.0 * math.prod(out_shape) * contracted


def _conv_flops(eqn) -> float:
    rhs_shape = eqn.invars[1].aval.shape  # kernel: out_features × (in_features / groups) × spatial
    out_shape = eqn.outvars[0].aval.shape
    per_output = math.prod(rhs_shape) / rhs_shape[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2.0 * math.prod(out_shape) * per_output


def _sub_jaxprs(value) -> list:
    """Jaxprs held in an equation parameter (a jaxpr, a closed jaxpr, or a tuple of them)."""
    if isinstance(value, jex_core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jex_core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def jaxpr_matmul_flops(jaxpr) -> float:
    """Matmul/conv FLOPs of a jaxpr, scans unrolled (see module docstring)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_general_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * jaxpr_matmul_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(jaxpr_matmul_flops(b.jaxpr) for b in eqn.params["branches"])
        elif name == "shard_map":
            total += eqn.params["mesh"].size * jaxpr_matmul_flops(eqn.params["jaxpr"])
        else:  # pjit, remat, custom_jvp/vjp calls, while (body counted once): recurse as-is
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    total += jaxpr_matmul_flops(sub)
    return total


def matmul_flops(fn: Callable, *args: Any) -> float:
    """Matmul/conv FLOPs of one call `fn(*args)` (args may be abstract ShapeDtypeStructs)."""
    return jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)
