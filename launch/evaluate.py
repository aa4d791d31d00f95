"""Evaluate a learned rule against A2C under the shared protocol (lpg/evaluation.py).

    python -m launch.evaluate --rule experiments/pretrained/lpg_tabular --workdir runs/eval
    python -m launch.evaluate --checkpoint runs/cpu/checkpoints [--step 300] --workdir runs/eval \
        --tasks tabular/dense,tabular/sparse --selection_seeds 0-3 --report_seeds 100-107 \
        --env_steps 300000 --num_envs 32

For every task, both rules get the same budget, num_envs, T and report seeds (seed i: the same
environment, θ0 and keys for both). LPG's α_lr × α_y is chosen from the task's grid (9 settings)
on the selection seeds; A2C uses its tuned setting from experiments/configs/a2c_tuned.py (or, for a
task without one, is swept on the selection seeds). With --ppo, PPO is swept on the selection
seeds too (experiments/configs/ppo.py) and compared with LPG the same way. Writes <workdir>/results.md (mean [95% CI]
per rule, paired difference LPG − A2C [CI], verdict, paper values, selection tables),
<workdir>/eval_final_returns.csv (every task, rule, setting, seed, role and final return) and
<workdir>/<task>.png (mean curves with bootstrap CI bands over report seeds).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from launch import build
from launch import checkpoints
from launch import eval_report
from lpg import evaluation

_RULE = flags.DEFINE_string("rule", None, "Directory of a saved rule (meta_params.msgpack + rule.json).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint directory of a launch.train run.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_TASKS = flags.DEFINE_string("tasks", "tabular/dense,tabular/sparse", "Comma-separated task names.")
_SELECTION_SEEDS = flags.DEFINE_string(
    "selection_seeds", "0-3", "Seeds the settings are chosen on: 'a-b', 'a,b,c' or a count n (= 0..n-1).")
_REPORT_SEEDS = flags.DEFINE_string(
    "report_seeds", "100-107",
    "Seeds of the reported numbers, disjoint from --selection_seeds: 'a-b', 'a,b,c' or a count n "
    "(= 100..100+n-1).")
_SEED = flags.DEFINE_integer("seed", 0, "Base PRNG seed every lifetime key is folded from.")
_ENV_STEPS = flags.DEFINE_integer(
    "env_steps", 150_000, "Env steps per agent lifetime (0: the task's lifetime).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 16, "Parallel environments per agent.")
_UNROLL_LENGTH = flags.DEFINE_integer(
    "unroll_length", 20, "Env steps per environment between two agent updates (T; EPG's M), for "
    "every rule: learned rules should be evaluated at the T they were meta-trained with.")
_DISCOUNT = flags.DEFINE_float("discount", 0.99, "γ of LPG (and of A2C where it is swept).")
_UPDATES_PER_CHUNK = flags.DEFINE_integer("updates_per_chunk", 50, "Agent updates per jitted call.")
_PPO = flags.DEFINE_bool(
    "ppo", False, "Also evaluate PPO (swept with experiments/configs/ppo.py) and compare LPG with it.")
_REWARD_SCALE = flags.DEFINE_float(
    "reward_scale", 1.0, "Every rule trains on rewards × this (a diagnosis: does a learned rule "
    "transfer once rewards are on its training tasks' scale?). Returns are reported scaled.")
_EQ7_BASELINE = flags.DEFINE_bool(
    "eq7_baseline", False, "LPG only: subtract Eq. 7's action-independent baseline f_θ(s) (the "
    "agent's value head, trained towards π̂) from π̂ at meta-test, as the paper does on Atari.")
_LIFETIMES_PER_CHUNK = flags.DEFINE_integer(
    "lifetimes_per_chunk", 0,
    "0: vmap a call's lifetimes; n: sequential chunks of n (1 for conv agents on CPU).")


def validate_flags() -> evaluation.Protocol:
    """Checks every flag before any work; returns the protocol. Raises app.UsageError naming the
    flag, its value and what is allowed."""
    if bool(_RULE.value) == bool(_CHECKPOINT.value):
        raise app.UsageError("give exactly one of --rule or --checkpoint")
    for flag in (_RULE, _CHECKPOINT):
        if flag.value and not os.path.isdir(flag.value):
            raise app.UsageError(f"--{flag.name}={flag.value}: no such directory")
    if _STEP.value is not None and (_RULE.value or _STEP.value < 0):
        raise app.UsageError(f"--step={_STEP.value}: allowed only with --checkpoint, and must be >= 0")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    checks = [
        (_ENV_STEPS, _ENV_STEPS.value >= 0, "must be >= 0 (0: the task's lifetime)"),
        (_NUM_ENVS, _NUM_ENVS.value > 0, "must be > 0"),
        (_UNROLL_LENGTH, _UNROLL_LENGTH.value > 0, "must be > 0"),
        (_DISCOUNT, 0 < _DISCOUNT.value <= 1, "must be in (0, 1]"),
        (_UPDATES_PER_CHUNK, _UPDATES_PER_CHUNK.value > 0, "must be > 0"),
        (_LIFETIMES_PER_CHUNK, _LIFETIMES_PER_CHUNK.value >= 0, "must be >= 0 (0: no chunking)"),
        (_SEED, 0 <= _SEED.value < 2**31, "must be in [0, 2**31)"),
        (_REWARD_SCALE, _REWARD_SCALE.value > 0, "must be > 0"),
    ]
    if _PPO.value:
        from experiments.configs import ppo as ppo_config  # pylint: disable=g-import-not-at-top
        minibatches = ppo_config.get_config().ppo.minibatches
        checks.append((_NUM_ENVS, _NUM_ENVS.value % minibatches == 0,
                       f"must be a multiple of PPO's {minibatches} minibatches with --ppo"))
    for flag, ok, allowed in checks:
        if not ok:
            raise app.UsageError(f"--{flag.name}={flag.value} {allowed}")
    try:
        build.parse_tasks(_TASKS.value)
        return eval_report.make_protocol(
            _SELECTION_SEEDS.value, _REPORT_SEEDS.value, base_seed=_SEED.value,
            selection_name="--selection_seeds", report_name="--report_seeds")
    except ValueError as err:
        raise app.UsageError(str(err)) from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    protocol = validate_flags()
    if _RULE.value:
        rule, meta_params, provenance = checkpoints.load_rule(_RULE.value)
    else:
        rule, meta_params, provenance = eval_report.rule_from_checkpoint(_CHECKPOINT.value, _STEP.value)
    if _EQ7_BASELINE.value:
        rule = eval_report.with_eq7_baseline(rule)
        provenance = dict(provenance or {}, eq7_baseline=True)
    eval_report.evaluate_rule_on_tasks(
        rule, meta_params, tasks=_TASKS.value, protocol=protocol, env_steps=_ENV_STEPS.value,
        num_envs=_NUM_ENVS.value, workdir=_WORKDIR.value, discount=_DISCOUNT.value,
        unroll_length=_UNROLL_LENGTH.value, updates_per_chunk=_UPDATES_PER_CHUNK.value,
        lifetimes_per_chunk=_LIFETIMES_PER_CHUNK.value or None, provenance=provenance,
        with_ppo=_PPO.value, reward_scale=_REWARD_SCALE.value)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
