"""Evaluate a learned rule: fresh agents trained with the frozen rule, A2C side by side.

    python -m launch.evaluate --rule experiments/pretrained/lpg_cpu --workdir runs/eval
    python -m launch.evaluate --checkpoint runs/cpu/checkpoints [--step 300] --workdir runs/eval \
        --tasks tabular/dense,tabular/sparse --seeds 8 --env_steps 300000

For every task, LPG (with the restored η) and A2C each train `--seeds` agents per learning rate
of the task's α_lr grid with the same env-step budget; the learning rate with the best mean final
return is reported for each. Writes <workdir>/eval_final_returns.csv (every seed and learning rate), <workdir>/<task>.png (mean ± stderr
over seeds at the best learning rate) and <workdir>/results.md (mean ± stderr of the final return,
next to the paper's Fig. 3 values).
"""

from __future__ import annotations

from absl import app
from absl import flags
import ml_collections

from launch import build
from launch import checkpoints
from launch import eval_report

_RULE = flags.DEFINE_string("rule", None, "Directory of a saved rule (meta_params.msgpack + rule.json).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint directory of a launch.train run.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_TASKS = flags.DEFINE_string("tasks", "tabular/dense,tabular/sparse", "Comma-separated task names.")
_SEEDS = flags.DEFINE_integer("seeds", 4, "Agents per learning rate and rule.")
_ENV_STEPS = flags.DEFINE_integer("env_steps", 150_000, "Env steps per agent lifetime (0: the task's lifetime).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 16, "Parallel environments per agent.")
_DISCOUNT = flags.DEFINE_float("discount", 0.99, "γ for both rules.")
_Y_COST = flags.DEFINE_float("y_cost", 0.5, "α_y for LPG.")
_A2C_ENTROPY = flags.DEFINE_float("a2c_entropy_cost", 0.01, "A2C entropy bonus.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(_RULE.value) == bool(_CHECKPOINT.value):
        raise app.UsageError("give exactly one of --rule or --checkpoint")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    build.parse_tasks(_TASKS.value)  # fail on a bad task name before loading anything
    if _RULE.value:
        rule, meta_params, provenance = checkpoints.load_rule(
            _RULE.value, lambda c: build.make_rule(ml_collections.ConfigDict(c)))
    else:
        rule, meta_params, provenance = eval_report.rule_from_checkpoint(_CHECKPOINT.value, _STEP.value)
    eval_report.evaluate_rule_on_tasks(
        rule, meta_params, tasks=_TASKS.value, seeds=_SEEDS.value, env_steps=_ENV_STEPS.value,
        num_envs=_NUM_ENVS.value, workdir=_WORKDIR.value, discount=_DISCOUNT.value,
        y_cost=_Y_COST.value, a2c_entropy_cost=_A2C_ENTROPY.value, provenance=provenance)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
