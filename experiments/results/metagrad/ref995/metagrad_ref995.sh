set -x
# MetaGrad with the meta-objective's reference γ̄ = 0.995 (Xu et al.'s Atari setting) instead of 0.99,
# γ0 ∈ {0.9, 0.99} × β ∈ {1e-2, 1e-1} (4 settings, as many as A2C's γ sweep), against γ-swept A2C,
# both with the task's tuned α_lr, c_V, c_H; the same protocol and seeds as the session-6/7 runs.
PY=.venv/bin/python
CHAIN="--config.tasks=chain/long --config.env_steps=100000 --config.num_envs=16 --config.sweep.learning_rates=(40.0,) --config.sweep.value_costs=(0.05,) --config.sweep.entropy_costs=(0.01,) --config.selection_seeds=0-3 --config.report_seeds=100-107"
$PY -m launch.train_agent --config experiments/configs/a2c.py $CHAIN --config.sweep.discounts="(0.9,0.95,0.99,0.995)" --workdir runs/mg_a2c_chl
$PY -m launch.train_agent --config experiments/configs/metagrad.py:grid $CHAIN --config.metagrad.meta_discount=0.995 --config.metagrad.meta_learning_rates="(0.01,0.1)" --workdir runs/mg_metagrad_chl_ref995
$PY -m launch.compare_runs --a runs/mg_metagrad_chl_ref995 --a_rule MetaGrad --label_a "MetaGrad (γ̄ 0.995)" --b runs/mg_a2c_chl --b_rule A2C --label_b "A2C (γ swept)" --out runs/mg_chl_ref995_compare.md
LH="--config.tasks=tabular/long_horizon --config.env_steps=300000 --config.num_envs=32 --config.sweep.learning_rates=(80.0,) --config.sweep.value_costs=(0.05,) --config.sweep.entropy_costs=(0.05,) --config.selection_seeds=0-3 --config.report_seeds=100-107"
$PY -m launch.train_agent --config experiments/configs/a2c.py $LH --config.sweep.discounts="(0.9,0.95,0.99,0.995)" --workdir runs/mg_a2c_lh
$PY -m launch.train_agent --config experiments/configs/metagrad.py:grid $LH --config.metagrad.meta_discount=0.995 --config.metagrad.meta_learning_rates="(0.01,0.1)" --workdir runs/mg_metagrad_lh_ref995
$PY -m launch.compare_runs --a runs/mg_metagrad_lh_ref995 --a_rule MetaGrad --label_a "MetaGrad (γ̄ 0.995)" --b runs/mg_a2c_lh --b_rule A2C --label_b "A2C (γ swept)" --out runs/mg_lh_ref995_compare.md
