"""Tuned A2C settings per task: A2C's single candidate in launch/eval_report.py.

Produced by launch/train_agent.py:

    python -m launch.train_agent --config experiments/configs/a2c.py --config.tasks=tabular/dense,tabular/sparse,tabular/long_horizon,tabular/longer_horizon,tabular/long_dense --config.env_steps=300000 --config.num_envs=32 --config.selection_seeds=0-3 --config.report_seeds=100-107 --workdir runs/a2c_sweep

Selected on seeds [0, 1, 2, 3] (base seed 0); reported on seeds [100, 101, 102, 103, 104, 105, 106, 107].
Budget: 299,520 env steps per lifetime, 32 envs × T=20.
Grid: α_lr ∈ the task grid × value_cost ∈ (0.01, 0.05, 0.2) × entropy_cost ∈ (0.01, 0.05); γ=0.99, λ=0.95.
Entries: task -> (learning_rate, value_cost, entropy_cost, discount, td_lambda). On a tabular
task the value table's SGD step is learning_rate · value_cost (experiments/configs/a2c.py).
"""

PLACEHOLDER = False

FIELDS = ('learning_rate', 'value_cost', 'entropy_cost', 'discount', 'td_lambda')

TUNED = {
    'tabular/dense': (80.0, 0.05, 0.01, 0.99, 0.95),  # selection 36.069; report 27.202 [23.907, 33.211]
    'tabular/sparse': (80.0, 0.05, 0.01, 0.99, 0.95),  # selection 0.903; report 0.996 [0.994, 0.998]
    'tabular/long_horizon': (80.0, 0.05, 0.05, 0.99, 0.95),  # selection 17.745; report 15.138 [12.099, 17.859]
    'tabular/longer_horizon': (80.0, 0.05, 0.01, 0.99, 0.95),  # selection 9.136; report 8.145 [6.934, 9.296]
    'tabular/long_dense': (80.0, 0.2, 0.05, 0.99, 0.95),  # selection 23.867; report 26.070 [22.660, 29.367]
}
