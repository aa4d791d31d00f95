set -x
# MetaGrad with larger meta step sizes β ∈ {0.1, 0.3} (× γ0 ∈ {0.9, 0.99}: 4 settings, as many as A2C's γ sweep),
# against the same γ-swept A2C runs as session 6 (runs/mg_a2c_*).
.venv/bin/python -m launch.train_agent --config experiments/configs/metagrad.py:grid --config.tasks=tabular/long_horizon --config.sweep.entropy_costs="(0.05,)" --config.metagrad.meta_learning_rates="(0.1,0.3)" --workdir runs/mg_metagrad_lh_bigbeta
.venv/bin/python -m launch.compare_runs --a runs/mg_metagrad_lh_bigbeta --a_rule MetaGrad --label_a "MetaGrad (β 0.1, 0.3)" --b runs/mg_a2c_lh --b_rule A2C --label_b "A2C (γ swept)" --out runs/mg_lh_bigbeta_compare.md
.venv/bin/python -m launch.train_agent --config experiments/configs/metagrad.py:grid --config.tasks=chain/long --config.env_steps=100000 --config.num_envs=16 --config.sweep.learning_rates="(40.0,)" --config.sweep.value_costs="(0.05,)" --config.sweep.entropy_costs="(0.01,)" --config.metagrad.meta_learning_rates="(0.1,0.3)" --workdir runs/mg_metagrad_chl_bigbeta
.venv/bin/python -m launch.compare_runs --a runs/mg_metagrad_chl_bigbeta --a_rule MetaGrad --label_a "MetaGrad (β 0.1, 0.3)" --b runs/mg_a2c_chl --b_rule A2C --label_b "A2C (γ swept)" --out runs/mg_chl_bigbeta_compare.md
