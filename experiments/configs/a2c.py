"""A2C on registered tasks: the hand-designed baseline (SPEC §1 'Baselines'), tuned by a sweep.

    python -m launch.train_agent --config experiments/configs/a2c.py \
        --config.tasks=tabular/dense --config.env_steps=300000 --workdir runs/a2c_dense

Every task sweeps the grid α_lr × value_cost × entropy_cost on the selection seeds; the setting
with the best mean final return is then trained and reported on the (disjoint) report seeds
(`lpg.evaluation`, the protocol every rule shares). The sweep table lands in
<workdir>/sweep.{md,csv}, the chosen settings in <workdir>/a2c_tuned.py, the file to copy to
experiments/configs/a2c_tuned.py.

Value step size. A tabular agent's value table gets gradient only from the value loss
c_V · ½ (V(s) − G)² (mean over the T·B samples), so under SGD the value table's step size is
exactly α_lr · value_cost: value_cost is the critic's own step relative to the policy's α_lr.
With α_lr = 80 and value_cost = 0.5 (step 40) the table overshoots wherever many of the T·B
samples share a state, and diverged (value table → 1e18, then NaN). Hence value_cost is swept
with small values, per task, at each α_lr of the task's grid.

Only configuration here: no jax calls. Derived values (number of updates) are computed in
`launch/train_agent.py`, never written back.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.rule = "a2c"  # experiments/configs/ppo.py sets "ppo"
    config.tasks = "chain/short"  # comma-separated names from envs.names(), or "all"
    # Seed i's lifetime (E, θ0, all keys) is fold_in(key(seed), i); seed 0 gives the lifetimes
    # launch/evaluate.py uses. Seed specs: "a-b", "a,b,c", or a count n (selection: 0..n-1,
    # report: 100..100+n-1); the two sets must be disjoint.
    config.seed = 0
    config.selection_seeds = "0-3"  # the sweep is scored on these
    config.report_seeds = "100-107"  # the selected setting is reported on these
    config.env_steps = 300_000  # per lifetime; 0 = the task's full lifetime (3M/30M/1M/2M)
    config.lifetime_fraction = 0.0  # > 0: this fraction of each task's lifetime (overrides env_steps)
    config.num_envs = 64  # parallel environments per lifetime (SPEC Table 2)
    config.unroll_length = 20  # T (SPEC Table 2)
    config.updates_per_chunk = 50  # learner steps per jitted call (progress-bar granularity)
    config.lifetimes_per_call = 0  # lifetimes vmapped per jitted call; 0: the number of report seeds
    config.lifetimes_per_chunk = 0  # 0: vmap a call's lifetimes; n: chunks of n (1 for conv on CPU)

    # The grid swept per task on the selection seeds (all combinations).
    config.sweep = ml_collections.ConfigDict()
    config.sweep.learning_rates = ()  # α_lr; empty: the task's grid (tabular {20, 40, 80})
    config.sweep.value_costs = (0.01, 0.05, 0.2)  # c_V; tabular value step = α_lr · c_V
    config.sweep.entropy_costs = (0.01, 0.05)  # c_H
    config.sweep.discounts = ()  # γ; empty: config.hyper.discount only (e.g. "(0.9,0.99)" sweeps it)

    config.hyper = ml_collections.ConfigDict()  # fixed for every setting of the sweep
    config.hyper.discount = 0.99
    config.hyper.td_lambda = 0.95
    return config
