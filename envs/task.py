"""A training task: an environment plus everything a lifetime on it needs (SPEC §2, Table 3).

A `Task` is static, hashable configuration (a frozen dataclass holding the environment object and
a params sampler); it carries no arrays. `envs.registry` registers the paper's 15 tasks and lets
users register their own.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from envs import base

AGENT_KINDS = ("tabular", "mlp", "conv")
OPTIMISERS = ("sgd", "adam")
CONTINUOUS_POLICIES = ("gaussian", "tanh_gaussian")


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """Which agent architecture and optimiser a task uses (SPEC Table 3).

    kind: "tabular" (a table of logits/y/value indexed by the integer observation), "mlp"
      (D(hidden...)), or "conv" (C(conv_features...)-D(hidden...)); ReLU everywhere.
    conv_features: filter counts of 3x3 SAME conv layers (kind="conv" only).
    hidden: dense layer widths after the (optional) convs.
    optimiser: "sgd" (tabular agents) or "adam" (network agents).
    continuous_policy: the policy for Box action spaces (ignored for discrete ones): "gaussian"
      (a diagonal Normal; its samples are clipped to the bounds only when sent to the
      environment, the rollout keeps the sampled action) or "tanh_gaussian" (squashed into the
      bounds, SAC-style). `lpg.distributions` has both.
    """

    kind: str
    hidden: tuple[int, ...] = ()
    conv_features: tuple[int, ...] = ()
    optimiser: str = "adam"
    continuous_policy: str = "gaussian"

    def __post_init__(self):
        if self.kind not in AGENT_KINDS:
            raise ValueError(f"AgentSpec.kind={self.kind!r}; allowed: {AGENT_KINDS}")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"AgentSpec.optimiser={self.optimiser!r}; allowed: {OPTIMISERS}")
        if self.continuous_policy not in CONTINUOUS_POLICIES:
            raise ValueError(f"AgentSpec.continuous_policy={self.continuous_policy!r}; allowed: "
                             f"{CONTINUOUS_POLICIES}")
        if self.kind == "conv" and not self.conv_features:
            raise ValueError("AgentSpec(kind='conv') needs at least one conv_features entry")
        for width in (*self.hidden, *self.conv_features):
            if width <= 0:
                raise ValueError(f"AgentSpec widths must be positive, got {width}")


@dataclasses.dataclass(frozen=True)
class Task:
    """One registered training task.

    name: registry name, "family/variant" (e.g. "tabular/dense").
    env: the (unbatched, gymnax-compatible) environment.
    sample_params: key -> EnvParams for one lifetime (object positions, action space, chain
      length, ... are drawn here).
    lifetime_steps: environment steps in one agent lifetime (SPEC: 3M / 30M / 1M / 2M).
    discounts: the γ values a lifetime samples from (SPEC Table 2).
    agent: architecture and optimiser (SPEC Table 3).
    learning_rates: the α_lr grid (SPEC Table 3). A rule's own hyperparameter grids (LPG's α_y)
      belong to the rule (`UpdateRule.hyper_grid`), not to the task.
    """

    name: str
    env: base.Environment
    sample_params: Callable[[jax.Array], base.EnvParams]
    lifetime_steps: int
    agent: AgentSpec
    learning_rates: tuple[float, ...]
    discounts: tuple[float, ...] = (0.997, 0.995, 0.99)

    def __post_init__(self):
        if self.lifetime_steps <= 0:
            raise ValueError(f"Task {self.name!r}: lifetime_steps must be > 0, got {self.lifetime_steps}")
        for name in ("learning_rates", "discounts"):
            values = getattr(self, name)
            if not values or any(v <= 0 for v in values):
                raise ValueError(f"Task {self.name!r}: {name} must be non-empty and positive, got {values}")
        if any(g >= 1 for g in self.discounts):
            raise ValueError(f"Task {self.name!r}: discounts must be < 1, got {self.discounts}")
