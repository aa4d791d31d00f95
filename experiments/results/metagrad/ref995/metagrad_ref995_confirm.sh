set -x
# Confirmation on fresh report seeds 200-215 (never used before; selection still on 0-3) of
# MetaGrad with γ̄ = 0.995 vs γ-swept A2C, written after the long_horizon win on seeds 100-107.
# Hypothesis fixed before running: MetaGrad (γ̄ 0.995) − A2C > 0 on tabular/long_horizon;
# longer_horizon and long_dense are reported alongside whatever they show.
PY=.venv/bin/python
for spec in "long_horizon lh 0.05 0.05" "longer_horizon lhr 0.05 0.01" "long_dense ld 0.2 0.05"; do
  set -- $spec
  T="--config.tasks=tabular/$1 --config.env_steps=300000 --config.num_envs=32 --config.sweep.learning_rates=(80.0,) --config.sweep.value_costs=($3,) --config.sweep.entropy_costs=($4,) --config.selection_seeds=0-3 --config.report_seeds=200-215"
  $PY -m launch.train_agent --config experiments/configs/a2c.py $T --config.sweep.discounts="(0.9,0.95,0.99,0.995)" --workdir runs/mg_a2c_$2_s200
  $PY -m launch.train_agent --config experiments/configs/metagrad.py:grid $T --config.metagrad.meta_discount=0.995 --config.metagrad.meta_learning_rates="(0.01,0.1)" --workdir runs/mg_metagrad_$2_ref995_s200
  $PY -m launch.compare_runs --a runs/mg_metagrad_$2_ref995_s200 --a_rule MetaGrad --label_a "MetaGrad (γ̄ 0.995)" --b runs/mg_a2c_$2_s200 --b_rule A2C --label_b "A2C (γ swept)" --out runs/mg_$2_ref995_s200_compare.md
done
