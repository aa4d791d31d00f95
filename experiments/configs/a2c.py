"""A2C on one registered task: the hand-designed baseline (SPEC §1 'Baselines').

    python -m launch.train_agent --config experiments/configs/a2c.py \
        --config.task=tabular/dense --config.env_steps=2000000 --workdir runs/a2c_dense

Only configuration here: no jax calls. Derived values (number of updates) are computed in
`launch/train_agent.py`, never written back.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "chain/short"  # any name in envs.names()
    config.seed = 0
    config.num_seeds = 4  # independent lifetimes trained side by side (vmapped)
    config.env_steps = 300_000  # per seed; the task's full lifetime is task.lifetime_steps
    config.num_envs = 64  # parallel environments per lifetime (SPEC Table 2)
    config.unroll_length = 20  # T (SPEC Table 2)
    config.updates_per_chunk = 50  # learner steps per jitted call (progress-bar granularity)
    config.grad_clip = 0.0  # global-norm clipping of agent gradients; 0 disables

    config.hyper = ml_collections.ConfigDict()
    config.hyper.learning_rate = -1.0  # < 0: the middle value of the task's α_lr grid
    config.hyper.discount = 0.99
    config.hyper.td_lambda = 0.95
    config.hyper.entropy_cost = 0.01
    config.hyper.value_cost = 0.5
    config.hyper.y_cost = 0.0  # unused by A2C
    return config
