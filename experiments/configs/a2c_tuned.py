"""PLACEHOLDER tuned A2C settings per task (from a small machinery-check run; see the warning).

!!! PLACEHOLDER: these values come from a SMALL machinery check (100,000 env steps, 16 envs, 2
!!! selection seeds, 2 report seeds), NOT from the real sweep. They must be regenerated with:

    python -m launch.train_agent --config experiments/configs/a2c.py \
        --config.tasks=tabular/dense,tabular/sparse,tabular/long_horizon,tabular/longer_horizon,tabular/long_dense \
        --config.env_steps=300000 --config.num_envs=32 \
        --config.selection_seeds=0-3 --config.report_seeds=100-107 --workdir runs/a2c_sweep

!!! and replacing this file by runs/a2c_sweep/a2c_tuned.py (which states its own command, seeds
!!! and budget, and sets PLACEHOLDER = False).

Used by launch/eval_report.py as A2C's single candidate per task (tasks missing here are swept on
the selection seeds with experiments/configs/a2c.py's grid). Entries:
task -> (learning_rate, value_cost, entropy_cost, discount, td_lambda). On a tabular task the value
table's SGD step is learning_rate · value_cost (experiments/configs/a2c.py).

Placeholder run (1 min 36 s wall on the shared 2-core CPU):
    python -m launch.train_agent --config experiments/configs/a2c.py \
        --config.tasks=tabular/dense,tabular/sparse,tabular/long_horizon,tabular/longer_horizon,tabular/long_dense \
        --config.env_steps=100000 --config.num_envs=16 --config.selection_seeds=2 \
        --config.report_seeds=2 --config.lifetimes_per_call=8 --workdir runs/a2c_quick
selected on seeds [0, 1], reported on [100, 101] (base seed 0); 99,840 env steps per lifetime.
"""

PLACEHOLDER = True  # the real sweep's output sets this to False

FIELDS = ("learning_rate", "value_cost", "entropy_cost", "discount", "td_lambda")

# PLACEHOLDER VALUES (see the docstring): regenerate before using them for any result.
TUNED = {
    "tabular/dense": (80.0, 0.05, 0.05, 0.99, 0.95),  # selection mean final 36.065; report 23.256 [22.358, 24.154]
    "tabular/sparse": (80.0, 0.05, 0.01, 0.99, 0.95),  # selection 0.716; report 0.998 [0.998, 0.999]
    "tabular/long_horizon": (80.0, 0.05, 0.01, 0.99, 0.95),  # selection 15.395; report 12.998 [7.925, 18.071]
    "tabular/longer_horizon": (80.0, 0.01, 0.01, 0.99, 0.95),  # selection 8.489; report 9.208 [9.134, 9.282]
    "tabular/long_dense": (80.0, 0.05, 0.05, 0.99, 0.95),  # selection 17.386; report 24.599 [24.454, 24.744]
}
