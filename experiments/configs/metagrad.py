"""Meta-gradient RL of γ and λ (Xu et al. 2018; lpg/rules/metagrad.py) on registered tasks, by preset:

    python -m launch.train_agent --config experiments/configs/metagrad.py:cpu --workdir runs/metagrad_cpu
    python -m launch.train_agent --config experiments/configs/metagrad.py:grid --workdir runs/metagrad_grid

An A2C agent whose λ-return uses γ and λ learned within its own lifetime: after each update, η =
{γ, λ} moves along the meta-gradient of the A2C objective J̄ with fixed reference γ̄, λ̄ on the
next rollout. No meta-parameters are shared across lifetimes, so it is tuned and reported like
A2C (launch/train_agent.py, lpg/evaluation.py's protocol), and each report seed's γ and λ per
update land in <workdir>/<task>_stats.csv (final values in results.md).

The sweep (all combinations, scored on the selection seeds) covers the agent's α_lr × c_V × c_H
as for A2C and the method's own settings:
  sweep.discounts                the initial γ of each lifetime (HyperParams.discount); the
                                 initial λ is hyper.td_lambda;
  metagrad.meta_learning_rates   β, the Adam step size on the logits of γ and λ (the rule's
                                 `hyper_grid`, carried per lifetime in HyperParams.rule).
The rest of config.metagrad is fixed for the sweep: γ̄ (meta_discount), λ̄ (meta_td_lambda),
J̄'s entropy cost, which of γ / λ are learned, the trace decay μ.

Presets:
  cpu    chain/short (tabular delayed chains, L ~ U[5, 30]), 100k steps per lifetime, 16 envs:
         γ0 ∈ {0.9, 0.99} × β ∈ {1e-3, 1e-2} on 2 selection seeds, 4 report seeds: about 20 s on
         2 CPU cores (γ rises towards γ̄ = 0.99 from either start).
  grid   tabular/dense (11×11, 300k steps per lifetime, 32 envs as in experiments/configs/
         a2c_tuned.py) with A2C's tuned α_lr, c_V, c_H; γ0 ∈ {0.9, 0.99} × β ∈ {1e-3, 1e-2}.
Any value can be overridden on the command line, e.g. --config.metagrad.learn_td_lambda=False.
Configuration only: no jax calls here.
"""

import ml_collections

from experiments.configs import a2c

PRESETS = ("cpu", "grid")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"unknown metagrad config preset {preset!r}; allowed: {PRESETS}")
    config = a2c.get_config()
    config.rule = "metagrad"
    config.preset = preset

    # lpg/rules/metagrad.py's MetaGrad fields (static for the whole sweep but for the β grid).
    config.metagrad = ml_collections.ConfigDict()
    config.metagrad.meta_discount = 0.99  # γ̄ of J̄
    config.metagrad.meta_td_lambda = 1.0  # λ̄ of J̄
    config.metagrad.meta_entropy_cost = 0.0  # J̄ judges returns, not exploration
    config.metagrad.meta_learning_rates = (1e-3, 1e-2)  # β: swept (HyperParams.rule["meta_lr"])
    config.metagrad.learn_discount = True
    config.metagrad.learn_td_lambda = True
    config.metagrad.trace_decay = 0.0  # μ: 0 = the last update's ∂θ'/∂η only

    config.sweep.discounts = (0.9, 0.99)  # initial γ of each lifetime (swept)
    config.hyper.discount = 0.99  # the initial γ only if sweep.discounts is emptied
    config.hyper.td_lambda = 0.95  # initial λ

    if preset == "cpu":
        config.tasks = "chain/short"
        config.env_steps = 100_000
        config.num_envs = 16
        config.selection_seeds = "0-1"
        config.report_seeds = "100-103"
        config.sweep.learning_rates = (40.0,)
        config.sweep.value_costs = (0.05,)
        config.sweep.entropy_costs = (0.01,)
    elif preset == "grid":
        config.tasks = "tabular/dense"
        config.env_steps = 300_000
        config.num_envs = 32
        config.selection_seeds = "0-3"
        config.report_seeds = "100-107"
        # A2C's tuned setting on tabular/dense (experiments/configs/a2c_tuned.py).
        config.sweep.learning_rates = (80.0,)
        config.sweep.value_costs = (0.05,)
        config.sweep.entropy_costs = (0.01,)
    return config
