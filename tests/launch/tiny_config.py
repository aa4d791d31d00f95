"""A tiny two-group LPG config for the multi-device / multi-process tests (no jax imports: the
launcher loads it before jax.distributed.initialize)."""

from experiments.configs import lpg as lpg_configs

STEPS = 4


def get_config():
    """8 lifetimes per task split over 1, 2 or 4 devices; lifetimes of 100 (chain) and 300 (grid)
    env steps end within a few meta-steps, so resets and bandit records happen in STEPS steps."""
    c = lpg_configs.get_config("cpu")
    c.rule.hidden_size = 8
    c.rule.y_dim = 4
    c.meta.tasks = "chain/short,tabular/dense"
    c.meta.lifetimes_per_task = 8
    c.meta.num_envs = 4
    c.meta.unroll_length = 5
    c.meta.num_updates = 2
    c.meta.lifetime_scale = 0.0001
    c.meta.steps = STEPS
    c.log_every = 1
    c.checkpoint_every = 2
    return c
