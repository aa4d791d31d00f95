"""PPO on registered tasks: the hand-designed baseline EPG and MetaGenRL report against, tuned by a
sweep under the same protocol as A2C (launch/train_agent.py, lpg/evaluation.py).

    python -m launch.train_agent --config experiments/configs/ppo.py \
        --config.tasks=gymnax/CartPole-v1 --config.env_steps=500000 --workdir runs/ppo_cartpole

The sweep: α_lr (empty: the task's grid; gymnax {3e-4, 1e-3, 2.5e-3}) × value_cost × entropy_cost
= 3 × 2 × 2 = 12 settings per task, as many as or more than LPG's α_lr × α_y (9). PPO's own
settings (config.ppo) are the usual ones (Schulman et al. 2017; PureJaxRL's CartPole/MinAtar
configurations) and stay fixed. Minibatches split the environments, so num_envs must be a
multiple of config.ppo.minibatches. Only configuration here: no jax calls.
"""

import ml_collections

from experiments.configs import a2c


def get_config() -> ml_collections.ConfigDict:
    config = a2c.get_config()
    config.rule = "ppo"
    config.num_envs = 16  # 4 minibatches of 4 environments
    config.unroll_length = 32  # T: 512 steps per rollout, 16 Adam steps per rollout (4 × 4)
    config.updates_per_chunk = 20

    config.ppo = ml_collections.ConfigDict()
    config.ppo.clip_epsilon = 0.2
    config.ppo.epochs = 4
    config.ppo.minibatches = 4
    config.ppo.normalize_advantages = True
    config.ppo.clip_value = True
    config.ppo.max_grad_norm = 0.5

    config.sweep.learning_rates = ()  # the task's grid
    config.sweep.value_costs = (0.25, 0.5)
    config.sweep.entropy_costs = (0.0, 0.01)
    return config
