"""MetaGenRL (Kirsch et al. 2020) meta-training configurations, by preset:

    python -m launch.train --config experiments/configs/metagenrl.py:cpu    --workdir runs/metagenrl_cpu
    python -m launch.train --config experiments/configs/metagenrl.py:paper  --workdir /shared/metagenrl

The learned objective L_α is lpg/rules/metagenrl.py (a backward LSTM over truncated episodes of
replayed experience); its meta-trainer lpg/meta/metagenrl.py runs a population of TD3 agents
(lpg/td3.py) that share L_α: every meta-step each agent takes `td3.policy_delay` environment and
critic steps, one policy step on L_α, and contributes ∇_α Q(s, π_φ'(s)) (φ' after
`meta.inner_steps` gradient steps on L_α) to α's averaged Adam step.

Presets:
  paper  the paper's Tables 3–4: policy and critics 3×350 with layer norm, batch 100, all
         learning rates 1e-3, γ = 0.99, τ = 0.005, target noise 0.2 (clip 0.5), acting noise 0.1,
         10k random warm-up steps, 20 agents split evenly over `meta.tasks`, 3 inner steps, LSTM
         32, action convolutions 3 × 32, η = 1000, truncated episodes of 20, meta-gradient clipped
         at global norm 1.0, DDPG annealing over the first 10k steps, 1M steps per agent.
         The paper's tasks (Cheetah, Hopper, LunarLanderContinuous) are stood in for by brax.
  cpu    gymnax/Pendulum-v1, 4 small agents (2×64 networks, LSTM 16), batches of 16 episodes,
         2 inner steps: a few minutes on 2 CPU cores.
  table2_cpu  the generalisation experiment of Table 2 at this machine's scale: `cpu`'s agents,
         8 of them split over two training environments with randomised physics (gymnax
         random_pendulum, brax inverted_pendulum on the positional backend), 20k meta-steps
         (41k environment steps per agent). Meta-tested on the seen random_pendulum and the
         unseen brax random_reacher by experiments/metagenrl_table2.py.
  table2_cpu_resets  table2_cpu with the paper's 10k-step DDPG anneal and agents reset every
         7,500 meta-steps (15k env steps; staggered, lpg/meta/metagenrl.py), 30k meta-steps: L_α
         also meets young, randomly initialised agents, as it does at meta-test.
Any value can be overridden on the command line, e.g. --config.meta.steps=100.
Configuration only: no jax calls here.
"""

import ml_collections

PRESETS = ("cpu", "table2_cpu", "table2_cpu_resets", "paper")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"unknown MetaGenRL config preset {preset!r}; allowed: {PRESETS}")
    c = ml_collections.ConfigDict()
    c.method = "metagenrl"
    c.preset = preset
    c.seed = 0

    # The learned objective L_α (lpg/rules/metagenrl.py; paper Table 3).
    c.rule = ml_collections.ConfigDict()
    c.rule.lstm_size = 32
    c.rule.action_layers = 3  # kernel-1 convolutions over the action dimensions
    c.rule.action_filters = 32
    c.rule.output_bound = 1000.0  # η: l_t = η tanh(x / η)
    c.rule.reduction = "sum"  # of l_t over the T steps of an episode ("mean" also allowed)

    # The TD3 agents (lpg/td3.py; paper Tables 3–4).
    c.agent = ml_collections.ConfigDict()
    c.agent.hidden = (350, 350, 350)
    c.agent.layer_norm = True
    c.agent.num_envs = 1
    c.agent.buffer_capacity = 1_000_000
    c.agent.batch_size = 100  # transitions per critic step
    c.agent.warmup_steps = 10_000
    c.agent.tau = 0.005
    c.agent.exploration_noise = 0.1
    c.agent.policy_noise = 0.2
    c.agent.noise_clip = 0.5
    c.agent.policy_delay = 2  # critic steps per policy and objective step
    c.agent.learning_rate = 1e-3  # λ1 = λ2, Adam for critics and policy
    c.agent.discount = 0.99

    c.meta = ml_collections.ConfigDict()
    c.meta.tasks = "brax/halfcheetah-positional,brax/hopper-positional"  # one group each
    c.meta.num_agents = 20  # in total, split evenly over meta.tasks
    c.meta.sequence_length = 20  # truncated episode length T
    c.meta.sequence_batch_size = 100  # N truncated episodes per minibatch
    c.meta.inner_steps = 3  # K (1–3)
    c.meta.inner_learning_rate = 1e-3  # λ3
    c.meta.learning_rate = 1e-3  # λ4, Adam on α
    c.meta.max_grad_norm = 1.0
    c.meta.ddpg_anneal_steps = 10_000
    c.meta.agent_lifetime = 0  # meta-steps before an agent is replaced by a fresh one; 0: never
    c.meta.steps = 495_000  # (1M − 10k warm-up) / 2 env steps per meta-step

    c.log_every = 1000
    c.checkpoint_every = 10_000
    c.keep_checkpoints = 3

    if preset in ("cpu", "table2_cpu", "table2_cpu_resets"):
        c.meta.tasks = "gymnax/Pendulum-v1"
        c.meta.num_agents = 4
        c.rule.lstm_size = 16
        c.rule.action_layers = 2
        c.rule.action_filters = 16
        c.agent.hidden = (64, 64)
        c.agent.layer_norm = False
        c.agent.buffer_capacity = 50_000
        c.agent.batch_size = 64
        c.agent.warmup_steps = 1_000
        c.meta.sequence_batch_size = 16
        c.meta.inner_steps = 2
        c.meta.ddpg_anneal_steps = 2_000
        c.meta.steps = 10_000
        c.log_every = 200
        c.checkpoint_every = 1_000
    if preset in ("table2_cpu", "table2_cpu_resets"):
        c.meta.tasks = "gymnax/random_pendulum,brax/inverted_pendulum-positional"
        c.meta.num_agents = 8
        c.meta.steps = 20_000
    if preset == "table2_cpu_resets":
        c.meta.ddpg_anneal_steps = 10_000
        c.meta.agent_lifetime = 7_500
        c.meta.steps = 30_000
    return c
