set -x
# MetaGrad vs γ-swept A2C on Breakout-MinAtar at the reduced MinAtar protocol (500k steps = 5% of the
# lifetime, 16 envs, selection seeds 0-1, report seeds 100-103), both with A2C's Breakout setting
# (α_lr 2.5e-3, c_V 0.2, c_H 0.05: the session-3 A2C selection); 4 settings each.
COMMON="--config.tasks=gymnax/Breakout-MinAtar --config.env_steps=500000 --config.num_envs=16 --config.selection_seeds=0-1 --config.report_seeds=100-103 --config.lifetimes_per_chunk=1 --config.sweep.learning_rates=(0.0025,) --config.sweep.value_costs=(0.2,) --config.sweep.entropy_costs=(0.05,)"
.venv/bin/python -m launch.train_agent --config experiments/configs/a2c.py $COMMON --config.sweep.discounts="(0.9,0.95,0.99,0.995)" --workdir runs/mg_a2c_breakout
.venv/bin/python -m launch.train_agent --config experiments/configs/metagrad.py:cpu $COMMON --config.metagrad.meta_learning_rates="(0.01,0.1)" --workdir runs/mg_metagrad_breakout
.venv/bin/python -m launch.compare_runs --a runs/mg_metagrad_breakout --a_rule MetaGrad --label_a MetaGrad --b runs/mg_a2c_breakout --b_rule A2C --label_b "A2C (γ swept)" --out runs/mg_breakout_compare.md
