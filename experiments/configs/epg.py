"""Evolved Policy Gradients (Houthooft et al. 2018) meta-training configurations, by preset:

    python -m launch.train --config experiments/configs/epg.py:cpu     --workdir runs/epg_cpu
    python -m launch.train --config experiments/configs/epg.py:hopper  --workdir runs/epg_hopper
    python -m launch.train --config experiments/configs/epg.py:paper   --workdir /shared/epg \
        --multihost

The learned loss is lpg/rules/epg.py; its outer loop is OpenAI-ES (lpg/meta/es.py) with the PPO
guidance weight α annealed 1 → 0 (`meta.es.anneal`); every candidate trains one fresh agent for a
whole lifetime of `meta.lifetime_steps` env steps (M = `meta.unroll_length` steps per update in
each of `meta.num_envs` environments) and is scored by its mean episode return.

Presets:
  cpu      gymnax/random_pendulum (m, l, g per lifetime), a small loss network (buffer 32):
           shows learning in minutes on 2 CPU cores.
  hopper   brax/random_hopper-positional (gravity, friction, mass, thickness per lifetime), the
           paper's loss network, 128 updates of 128 steps per lifetime (16,384 steps, Table 1).
  reacher  brax/random_reacher-positional (link lengths), 512 updates per lifetime (65,536).
  hopper_cpu, reacher_cpu
           the same families sized for 2 CPU cores (about 20 s per generation on one core):
           the paper's loss network, 8 streams × 32 updates of 128 steps (32,768 steps) per
           lifetime, 16 candidates, 150 generations, α annealed over the first 50.
  paper    the paper's scale for accelerators: hopper family, 64 antithetic candidates (the
           paper's 256 workers share 64 noise vectors), σ = 0.01, Adam 1e-2, 3000 generations.
Any value can be overridden on the command line, e.g. --config.meta.steps=100.
Configuration only: no jax calls here.
"""

import ml_collections

PRESETS = ("cpu", "hopper", "hopper_cpu", "reacher", "reacher_cpu", "paper")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"unknown EPG config preset {preset!r}; allowed: {PRESETS}")
    c = ml_collections.ConfigDict()
    c.method = "epg"
    c.preset = preset
    c.seed = 0

    # The loss network L_φ (lpg/rules/epg.py; defaults are the paper's §4.1 shapes).
    c.rule = ml_collections.ConfigDict()
    c.rule.buffer_length = 128  # N
    c.rule.conv1_kernel = 8
    c.rule.conv1_stride = 7
    c.rule.conv1_channels = 8
    c.rule.conv2_kernel = 4
    c.rule.conv2_stride = 2
    c.rule.conv2_channels = 8
    c.rule.context_size = 32
    c.rule.hidden_size = 16
    c.rule.memory_size = 32
    c.rule.use_reward = True  # False: the reward-free loss (meta-test mode without rewards)
    c.rule.activation = "leaky_relu"
    c.rule.epochs = 1  # Adam steps per rollout: epochs × minibatches
    c.rule.minibatches = 1
    c.rule.max_grad_norm = 0.5

    c.meta = ml_collections.ConfigDict()
    c.meta.tasks = "brax/random_hopper-positional"  # comma-separated; one group each
    c.meta.num_envs = 8  # B environment streams per lifetime, one buffer each
    c.meta.unroll_length = 128  # M: env steps per stream between two inner updates
    c.meta.lifetime_steps = 16_384 * 8  # per candidate: 128 updates of M · B steps
    c.meta.learning_rates = (1e-3,)  # the inner Adam's α_lr (the released code's 1e-3)
    c.meta.discounts = (0.99,)  # γ of the PPO guidance (and of the return EPG's inputs see)
    c.meta.entropy_costs = (0.0,)  # c_H of the PPO guidance
    c.meta.td_lambda = 0.95  # GAE λ of the PPO guidance
    c.meta.steps = 3000  # generations
    c.meta.estimator = "es"  # EPG's outer loop (backprop through whole lifetimes is not offered)
    c.meta.lifetimes_per_chunk = 0
    c.meta.es = ml_collections.ConfigDict()
    c.meta.es.population = 16
    c.meta.es.sigma = 0.01
    c.meta.es.sigma_decay = 1.0
    c.meta.es.sigma_min = 0.0
    c.meta.es.learning_rate = 1e-2
    c.meta.es.max_grad_norm = 0.0
    c.meta.es.fitness = "mean"  # EPG's criterion: return over the whole lifetime (learning fast)
    c.meta.es.final_fraction = 0.1
    c.meta.es.anneal = "pg_guidance:1:0:500"  # PPO guidance α, 1 → 0 over the first 500 generations

    c.log_every = 10
    c.checkpoint_every = 50
    c.keep_checkpoints = 3

    # launch.evaluate of the saved rule: held-out lifetimes (report seeds) vs tuned PPO and A2C.
    c.eval = ml_collections.ConfigDict()
    c.eval.tasks = c.meta.tasks
    c.eval.seeds = 8
    c.eval.selection_seeds = 2

    if preset == "cpu":
        c.meta.tasks = c.eval.tasks = "gymnax/random_pendulum"
        c.rule.buffer_length = 32
        c.rule.conv1_kernel = 4
        c.rule.conv1_stride = 3
        c.rule.conv2_kernel = 3
        c.rule.conv2_stride = 2
        c.rule.context_size = 16
        c.rule.memory_size = 8
        c.meta.num_envs = 8
        c.meta.unroll_length = 64
        # 400 updates (1024 episodes of 200 steps): PPO (4 × 4 minibatch steps, 8 envs × 64), γ = 0.9, reaches
        # −383 [−472, −294] in such a lifetime; with γ = 0.99, or in 51k steps, it does not learn.
        c.meta.lifetime_steps = 400 * 64 * 8
        c.meta.discounts = (0.9,)
        c.meta.steps = 300
        c.meta.es.population = 16
        c.meta.es.sigma = 0.02
        c.meta.es.anneal = "pg_guidance:1:0:100"
    elif preset in ("hopper_cpu", "reacher_cpu"):
        family = "hopper" if preset == "hopper_cpu" else "reacher"
        c.meta.tasks = c.eval.tasks = f"brax/random_{family}-positional"
        c.meta.lifetime_steps = 32 * 128 * 8
        c.meta.steps = 150
        c.meta.es.anneal = "pg_guidance:1:0:50"
    elif preset == "reacher":
        c.meta.tasks = c.eval.tasks = "brax/random_reacher-positional"
        c.meta.lifetime_steps = 65_536 * 8
    elif preset == "paper":
        c.meta.num_envs = 1  # the paper's worker: one environment stream
        c.meta.lifetime_steps = 16_384
        c.meta.es.population = 64
    return c
