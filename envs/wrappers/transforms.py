"""Task transforms for diagnosis: the same task with one thing changed.

    task = envs.make("gymnax/CartPole-v1")
    small = transforms.scale_rewards(task, 0.01)    # rewards × 0.01, everything else unchanged

Used by launch/diagnose_transfer.py to test whether a learned rule fails on a new domain because
of the reward magnitude (LPG was meta-trained on grid worlds with returns of order 1-10, CartPole's
+1 per step gives returns of order 100-500).
"""

from __future__ import annotations

import dataclasses

from envs.task import Task


class RewardScaledEnv:
    """Delegates everything to `env` except `step`/`step_env`, whose rewards are multiplied by
    `scale`. Episode returns computed from the rewards are therefore scaled too; divide by
    `scale` to compare with the original task."""

    def __init__(self, env, scale: float):
        if not scale > 0:
            raise ValueError(f"reward scale must be > 0, got {scale}")
        self.wrapped = env
        self.scale = float(scale)

    def __getattr__(self, name):
        # Only reached for attributes not set in __init__ (the wrapped env's interface).
        return getattr(self.wrapped, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.wrapped.step(key, state, action, params)
        return obs, state, reward * self.scale, terminated, truncated, info

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self.wrapped.step_env(key, state, action, params)
        return obs, state, reward * self.scale, terminated, info


def scale_rewards(task: Task, scale: float) -> Task:
    """`task` with every reward multiplied by `scale` (named "<name>-r<scale>", not registered)."""
    if scale == 1.0:
        return task
    return dataclasses.replace(task, name=f"{task.name}-r{scale:g}", env=RewardScaledEnv(task.env, scale))
