"""Registered update rules, by `KIND`, and building one from a saved configuration.

    rule = lpg.rules.make_rule("lpg", {"hidden_size": 64, "y_dim": 30})
    rule = lpg.rules.make_rule(**{"kind": ..., "config": ...})   # what a saved rule records

New rules subclass `lpg.rules.base.UpdateRule` and are added with `register_rule`.
"""

from __future__ import annotations

from typing import Any, Mapping

from lpg.rules import a2c
from lpg.rules import base
from lpg.rules import epg
from lpg.rules import lpg
from lpg.rules import lpg_v
from lpg.rules import metagrad
from lpg.rules import ppo

RULES: dict[str, type[base.UpdateRule]] = {}


def register_rule(cls: type[base.UpdateRule], overwrite: bool = False) -> type[base.UpdateRule]:
    """Adds a rule class under its `KIND`; re-registering a kind needs `overwrite=True`."""
    kind = getattr(cls, "KIND", None)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{cls.__name__} needs a non-empty string KIND to be registered")
    if kind in RULES and RULES[kind] is not cls and not overwrite:
        raise ValueError(f"rule kind {kind!r} is already registered ({RULES[kind].__name__})")
    RULES[kind] = cls
    return cls


def make_rule(kind: str, config: Mapping[str, Any] | None = None) -> base.UpdateRule:
    """The rule of `kind` built from its `config()` dict (unknown keys are an error)."""
    if kind not in RULES:
        raise ValueError(f"unknown rule kind {kind!r}; registered: {sorted(RULES)}")
    try:
        return RULES[kind](**dict(config or {}))
    except TypeError as err:
        raise ValueError(f"bad configuration for rule {kind!r}: {err}") from err


for _cls in (lpg.LPG, a2c.A2C, ppo.PPO, epg.EPG, metagrad.MetaGrad):
    register_rule(_cls)
register_rule(lpg_v.LPGV)
