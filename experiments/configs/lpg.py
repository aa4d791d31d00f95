"""LPG meta-training configurations (SPEC §1, Table 2), selected by a preset name:

    python -m launch.train --config experiments/configs/lpg.py:cpu       --workdir runs/cpu
    python -m launch.train --config experiments/configs/lpg.py:tabular   --workdir runs/tab
    python -m launch.train --config experiments/configs/lpg.py:grids_chains --workdir runs/gc
    python -m launch.train --config experiments/configs/lpg.py:paper     --workdir /shared/paper \
        --multihost   # on every host of a pod: launch/tpu_pod.sh

Presets:
  cpu           the default: small enough to show meta-training progress in minutes on 2 CPU cores.
  tabular       the 5 tabular grid worlds (the paper's Fig. 3 'tabular' training set), sized for a
                ≤ 3 h CPU run (narrower LSTM, shorter lifetimes, fewer envs per lifetime).
  tabular_es    `tabular` meta-trained by evolution strategies instead of backprop (the TA-LPG
                recipe: whole short lifetimes of 1% of the task's, 16 candidates per task and
                generation); run beside `tabular` for the same wall time to compare estimators.
  grids_chains  5 tabular grids + 4 tabular delayed chains.
  paper         the paper's scale for accelerators: LSTM-256, m = 30, 960 lifetimes over all 15
                tasks, 64 envs per lifetime, full lifetimes.
Fig. 7 (ablations) and the LPG-V baseline, each `tabular` with exactly one thing changed
(FIG7_CHANGES; experiments/fig7_ablations.py trains and evaluates them all beside `tabular`):
  ablate_no_softmax    y ∈ R^m with ‖y − ŷ‖² instead of a softmax y with KL (rule.y_softmax).
  ablate_no_y_entropy  no H(y) regulariser in Eq. 4 (β1 = 0).
  ablate_no_l2         no L2 regularisers on π̂ and ŷ in Eq. 4 (β2 = β3 = 0).
  ablate_fixed_hyper   fixed α per task (the middle of each grid) instead of the bandit.
  lpg_v                LPG-V: only π̂ is learned, from a value function trained by TD(λ) (no y).
Any value can be overridden on the command line, e.g. --config.meta.steps=100.
Configuration only: no jax calls here.
"""

import ml_collections

TABULAR_GRIDS = ("tabular/dense", "tabular/sparse", "tabular/long_horizon",
                 "tabular/longer_horizon", "tabular/long_dense")
TABULAR_CHAINS = ("chain/short", "chain/short_noisy", "chain/long", "chain/long_noisy")
RANDOM_GRIDS = ("random/dense", "random/long_horizon", "random/small", "random/small_sparse",
                "random/very_dense")
ALL_TASKS = TABULAR_GRIDS + RANDOM_GRIDS + TABULAR_CHAINS + ("chain/distractor",)
# Fig. 7: preset -> {config key: value} applied to `tabular` (the one thing each one changes).
FIG7_BASE = "tabular"
FIG7_CHANGES = {
    "ablate_no_softmax": {"rule.y_softmax": False},
    "ablate_no_y_entropy": {"objective.y_entropy_cost": 0.0},
    "ablate_no_l2": {"objective.pi_hat_l2_cost": 0.0, "objective.y_hat_l2_cost": 0.0},
    "ablate_fixed_hyper": {"bandit.enabled": False},
    "lpg_v": {"rule.kind": "lpg_v"},
}
PRESETS = ("cpu", "tabular", "tabular_es", "grids_chains", "paper") + tuple(FIG7_CHANGES)


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"unknown LPG config preset {preset!r}; allowed: {PRESETS}")
    if preset in FIG7_CHANGES:
        c = get_config(FIG7_BASE)
        c.preset = preset
        for key, value in FIG7_CHANGES[preset].items():
            *sections, name = key.split(".")
            node = c
            for section in sections:
                node = node[section]
            node[name] = value
        return c
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.debug = False  # True: tiny shapes and NaN checks (launch/train.py)

    c.rule = ml_collections.ConfigDict()
    c.rule.kind = "lpg"  # "lpg_v": the LPG-V baseline (π̂ only; V by TD(λ) instead of y)
    c.rule.hidden_size = 256  # LSTM width
    c.rule.y_dim = 30  # m
    c.rule.y_softmax = True  # False: Fig. 7 'no softmax(y)' ablation
    c.rule.matmul_dtype = "float32"  # "bfloat16": LSTM gate matmul on bf16 operands, f32 accumulation
    c.rule.y_costs = (0.1, 0.5, 1.0)  # α_y grid (Table 3): the bandit's arms are α_lr × α_y
    c.rule.value_costs = (0.01, 0.05, 0.2)  # LPG-V only: α_V grid (value loss weight), replaces α_y

    c.objective = ml_collections.ConfigDict()
    c.objective.y_entropy_cost = 1e-3  # β1
    c.objective.pi_hat_l2_cost = 1e-3  # β2
    c.objective.y_hat_l2_cost = 1e-3  # β3

    c.bandit = ml_collections.ConfigDict()
    c.bandit.enabled = True  # False: Fig. 7 'fixed hyperparameters' (each grid's middle α per task)
    c.bandit.temperature = 0.1  # τ
    c.bandit.bonus = 0.2  # ρ
    c.bandit.window = 10

    c.meta = ml_collections.ConfigDict()
    c.meta.tasks = ",".join(ALL_TASKS)  # comma-separated registry names, one population group each
    c.meta.lifetimes_per_task = 64  # 15 × 64 = 960 (Table 2)
    c.meta.num_envs = 64  # B per lifetime
    c.meta.unroll_length = 20  # T
    c.meta.num_updates = 5  # K
    c.meta.lifetime_scale = 1.0  # fraction of each task's lifetime (SPEC: 3M/30M/1M/2M steps)
    c.meta.steps = 100_000  # meta-updates
    c.meta.learning_rate = 1e-4
    c.meta.max_grad_norm = 1.0
    # Cosine decay of the meta learning rate from step lr_decay_begin over lr_decay_steps steps
    # down to lr_final_fraction × learning_rate (0 steps: constant, the paper's setting).
    c.meta.lr_decay_begin = 0
    c.meta.lr_decay_steps = 0
    c.meta.lr_final_fraction = 0.1
    c.meta.entropy_costs = (0.01, 0.02)  # β0 choices per lifetime
    c.meta.td_lambda = 0.95  # critic of the meta-objective
    c.meta.critic_learning_rate = 1e-3  # Adam, network critics
    c.meta.critic_learning_rate_tabular = 0.1  # Adam, tabular critics (per-entry step ≈ this)
    c.meta.entropy_floor = 1e-3  # reset a lifetime at this policy entropy
    c.meta.remat = "full"  # backward pass of each K inner update: "full" | "dots" | "none"
    c.meta.lifetimes_per_chunk = 0  # >0: scan over chunks of this many lifetimes per device
    c.meta.agent_grad_clip = 0.0  # 0: no clipping of agent gradients
    # How η's gradient is estimated: "backprop" (truncated through K updates, the paper's) or
    # "es" (OpenAI-ES over whole lifetimes of lifetime_scale × the task's lifetime, lpg/meta/es.py;
    # the bandit, K, the critic and the objective's β's are then unused).
    c.meta.estimator = "backprop"
    c.meta.es = ml_collections.ConfigDict()
    c.meta.es.population = 8  # P candidates per generation (even: antithetic pairs)
    c.meta.es.sigma = 0.01  # σ (EPG's)
    c.meta.es.sigma_decay = 1.0  # σ ← max(σ · decay, sigma_min) per generation (1: constant)
    c.meta.es.sigma_min = 0.0
    c.meta.es.learning_rate = 1e-2  # Adam on the ES mean (EPG's outer Adam)
    c.meta.es.max_grad_norm = 0.0  # global-norm clip of the ES gradient (0: none)
    c.meta.es.fitness = "mean"  # "mean": all the lifetime's episodes; "final": its last final_fraction
    c.meta.es.final_fraction = 0.1
    c.meta.es.anneal = ""  # "name:start:end:generations,...": linear schedules of rule hyperparameters

    c.log_every = 10  # meta-steps between metric rows
    c.checkpoint_every = 500  # meta-steps between checkpoints (and on SIGTERM/SIGINT/end)
    c.keep_checkpoints = 3

    # --evaluate: LPG vs A2C under lpg/evaluation.py's protocol (launch/eval_report.py).
    c.eval = ml_collections.ConfigDict()
    c.eval.tasks = ",".join(TABULAR_GRIDS)
    c.eval.seeds = 8  # report seeds 100..107, the same lifetimes for both rules
    c.eval.selection_seeds = 4  # seeds 0..3 choose LPG's α_lr × α_y (disjoint from the report seeds)
    c.eval.env_steps = 0  # 0: each task's full lifetime
    c.eval.num_envs = 64
    c.eval.learning_rate = 0.0  # LPG's α_lr: 0 selects from the task's grid; > 0 fixes it
    c.eval.y_cost = 0.0  # LPG's α_y: 0 selects from the rule's grid rule.y_costs; > 0 fixes it

    if preset == "cpu":
        c.rule.hidden_size = 32
        c.meta.tasks = "tabular/dense,tabular/sparse"
        c.meta.lifetimes_per_task = 8
        c.meta.num_envs = 16
        c.meta.lifetime_scale = 0.05  # 150k-step lifetimes
        c.meta.steps = 300
        c.meta.learning_rate = 1e-3
        c.checkpoint_every = 100
        c.eval.tasks = "tabular/dense,tabular/sparse"
        c.eval.seeds = 4  # report seeds 100..103
        c.eval.selection_seeds = 2  # seeds 0, 1: the whole evaluation takes ~1 min on 2 cores
        c.eval.env_steps = 150_000
        c.eval.num_envs = 16
    elif preset == "tabular":
        c.rule.hidden_size = 64
        c.meta.tasks = ",".join(TABULAR_GRIDS)
        c.meta.lifetimes_per_task = 8
        c.meta.num_envs = 32
        c.meta.lifetime_scale = 0.1
        c.meta.steps = 5000
        c.meta.learning_rate = 5e-4
        c.eval.env_steps = 300_000
        c.eval.num_envs = 32
    elif preset == "tabular_es":
        c.rule.hidden_size = 64
        c.meta.tasks = ",".join(TABULAR_GRIDS)
        c.meta.estimator = "es"
        c.meta.es.population = 16
        c.meta.es.sigma = 0.02
        c.meta.es.learning_rate = 3e-3
        c.meta.num_envs = 32
        c.meta.lifetime_scale = 0.01  # 30k-step lifetimes: 46 updates of 32 envs × T = 20
        c.meta.steps = 5000
        c.checkpoint_every = 50
        c.eval.env_steps = 300_000
        c.eval.num_envs = 32
    elif preset == "grids_chains":
        c.meta.tasks = ",".join(TABULAR_GRIDS + TABULAR_CHAINS)
        c.meta.lifetimes_per_task = 64
        c.eval.tasks = ",".join(TABULAR_GRIDS + TABULAR_CHAINS)
    return c
