"""A2C on one registered task: the hand-designed baseline (SPEC §1 'Baselines').

    python -m launch.train_agent --config experiments/configs/a2c.py \
        --config.task=tabular/dense --config.env_steps=2000000 --workdir runs/a2c_dense

Only configuration here: no jax calls. Derived values (number of updates) are computed in
`launch/train_agent.py`, never written back.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.tasks = "chain/short"  # comma-separated names from envs.names(), or "all"
    config.seed = 0
    config.num_seeds = 4  # independent lifetimes per learning rate, trained side by side
    config.env_steps = 300_000  # per lifetime; 0 = the task's full lifetime (3M/30M/1M/2M)
    config.lifetime_fraction = 0.0  # > 0: this fraction of each task's lifetime (overrides env_steps)
    config.num_envs = 64  # parallel environments per lifetime (SPEC Table 2)
    config.unroll_length = 20  # T (SPEC Table 2)
    config.updates_per_chunk = 50  # learner steps per jitted call (progress-bar granularity)
    config.lifetimes_per_chunk = 0  # 0: vmap all lifetimes; n: sequential chunks of n (1 for conv on CPU)

    config.hyper = ml_collections.ConfigDict()
    config.hyper.learning_rate = 0.0  # 0: sweep the task's α_lr grid and report the best
    config.hyper.discount = 0.99
    config.hyper.td_lambda = 0.95
    config.hyper.entropy_cost = 0.01
    config.hyper.value_cost = 0.5
    config.hyper.y_cost = 0.0  # unused by A2C
    return config
