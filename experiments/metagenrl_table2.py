"""Table 2 of Kirsch et al. 2020 at this machine's scale: meta-test a frozen MetaGenRL objective
on the environments it was meta-trained on and on unseen ones, against TD3, PPO and A2C.

    python -m launch.train --config experiments/configs/metagenrl.py:table2_cpu \
        --workdir runs/metagenrl_table2 --cpu_devices=0
    python -m experiments.metagenrl_table2 --rule runs/metagenrl_table2/rule \
        --workdir runs/eval_metagenrl_table2 \
        --tasks gymnax/random_pendulum,brax/inverted_pendulum-positional,brax/random_reacher-positional \
        --selection_seeds 0-1 --report_seeds 100-107 --env_steps 31000

`--rule` takes several objectives (comma-separated; e.g. two meta-training settings): each gets its
own columns, against the same baselines, labelled MetaGenRL[<run directory>].

Every learner trains fresh agents for `env_steps` environment steps per lifetime under one
protocol (lpg/evaluation.py; paired seeds: seed i is the same physics for all four):
  * MetaGenRL: TD3-structured agents (the meta-training run's networks, batch, warm-up and noise,
    read from its config.json) whose policy follows ∇_φ L_α of the frozen objective alone, the
    critic learning by TD (lpg/offpolicy_evaluation.py); its α_lr chosen from `--learning_rates`;
  * TD3: the same agents with TD3's own actor loss, α_lr from the same `--learning_rates`;
  * PPO: experiments/configs/ppo.py's sweep (12 settings), `--num_envs` × `--unroll_length`;
  * A2C (the REINFORCE-style baseline: policy gradient with a learned value baseline):
    experiments/configs/a2c.py's sweep (18 settings) unless a2c_tuned.py has the task.
Settings are chosen on the selection seeds and reported on the disjoint report seeds. A task is
"seen" when it is one of the meta-training run's config.meta.tasks.

Writes to --workdir: results.md (per task: each learner's mean final return [95% CI] and chosen
setting; MetaGenRL − each baseline paired per report seed [95% CI] and verdict; the selection
tables), final_returns.csv (every task, learner, setting, seed, role, final return) and
<task>.png (mean curves over the report seeds with bootstrap bands).
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
from absl import logging
import tqdm

import envs
from experiments import script_flags
from launch import build
from launch import checkpoints
from launch import eval_report
from lpg import evaluation
from lpg import offpolicy_evaluation as ope
from lpg import td3
from lpg.rules import a2c
from lpg.rules import metagenrl

_RULE = flags.DEFINE_list(
    "rule", None, "Directories of saved MetaGenRL objectives (launch.train's <workdir>/rule), one or "
    "more; several are evaluated side by side against the same baselines and must come from runs "
    "with the same agents and meta-training tasks.")
_WORKDIR = script_flags.WORKDIR
_TASKS = flags.DEFINE_string(
    "tasks", "gymnax/random_pendulum,brax/inverted_pendulum-positional,brax/random_reacher-positional",
    "Comma-separated meta-test tasks (Box actions, vector observations).")
_SELECTION_SEEDS = flags.DEFINE_string("selection_seeds", "0-1", "Seeds that choose each learner's setting.")
_REPORT_SEEDS = flags.DEFINE_string("report_seeds", "100-107", "Seeds of the reported numbers (disjoint).")
_ENV_STEPS = flags.DEFINE_integer(
    "env_steps", 31_000, "Environment steps per lifetime (warm-up included; for the off-policy learners "
    "the steps after the warm-up must split into --points × policy_delay).")
_POINTS = flags.DEFINE_integer("points", 30, "Curve points of the off-policy learners.")
_LEARNING_RATES = flags.DEFINE_list("learning_rates", ["1e-3", "3e-4"],
                                    "α_lr candidates of MetaGenRL and TD3 (policy and critics).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 8, "Environments per PPO/A2C agent.")
_UNROLL_LENGTH = flags.DEFINE_integer("unroll_length", 32, "PPO/A2C rollout length T.")
_DISCOUNT = flags.DEFINE_float("discount", 0.99, "γ of every learner.")
_SEED = flags.DEFINE_integer("seed", 0, "Base PRNG seed every lifetime key is folded from.")

BASELINES = ("TD3", "PPO", "A2C")


def load_objective(rule_dir: str) -> tuple[metagenrl.Objective, object, dict, dict]:
    """(objective, α, provenance, the meta-training run's config.json as a dict)."""
    objective, alpha, provenance = checkpoints.load_rule(rule_dir)
    if not isinstance(objective, metagenrl.Objective):
        raise app.UsageError(f"--rule={rule_dir} holds a {type(objective).__name__} rule, not a MetaGenRL objective")
    config_path = os.path.join(provenance.get("workdir", ""), "config.json")
    if not os.path.isfile(config_path):
        raise app.UsageError(f"--rule={rule_dir}: its meta-training config {config_path!r} (from the rule's "
                             "provenance) does not exist; the agents' settings are read from it")
    with open(config_path) as f:
        return objective, alpha, provenance, json.load(f)


def objective_labels(rule_dirs) -> list[str]:
    """"MetaGenRL" for one objective; "MetaGenRL[<run>]" (the rule's run directory name) for several."""
    if len(rule_dirs) == 1:
        return ["MetaGenRL"]
    return [f"MetaGenRL[{os.path.basename(os.path.dirname(os.path.abspath(d)))}]" for d in rule_dirs]


def td3_config(run_config: dict) -> td3.TD3:
    """The meta-training agents' TD3 settings (config.agent of experiments/configs/metagenrl.py)."""
    agent = run_config["agent"]
    return td3.TD3(hidden=tuple(agent["hidden"]), layer_norm=agent["layer_norm"], num_envs=1,
                   buffer_capacity=agent["buffer_capacity"], batch_size=agent["batch_size"],
                   warmup_steps=agent["warmup_steps"], tau=agent["tau"],
                   exploration_noise=agent["exploration_noise"], policy_noise=agent["policy_noise"],
                   noise_clip=agent["noise_clip"], policy_delay=agent["policy_delay"])


def validate_flags():
    """Every flag checked before any work; returns (protocol, learning rates, task names)."""
    for rule_dir in _RULE.value or [None]:
        if not rule_dir or not os.path.isdir(rule_dir):
            raise app.UsageError(f"--rule={rule_dir}: no such directory")
    if len(set(objective_labels(_RULE.value))) < len(_RULE.value):
        raise app.UsageError(f"--rule={_RULE.value}: two rules come from run directories with the same name")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    for flag, ok, allowed in [(_ENV_STEPS, _ENV_STEPS.value > 0, "must be > 0"),
                              (_POINTS, _POINTS.value > 0, "must be > 0"),
                              (_NUM_ENVS, _NUM_ENVS.value > 0, "must be > 0"),
                              (_UNROLL_LENGTH, _UNROLL_LENGTH.value > 0, "must be > 0"),
                              (_DISCOUNT, 0 < _DISCOUNT.value < 1, "must be in (0, 1)")]:
        if not ok:
            raise app.UsageError(f"--{flag.name}={flag.value} {allowed}")
    try:
        learning_rates = [float(lr) for lr in _LEARNING_RATES.value]
    except ValueError:
        raise app.UsageError(f"--learning_rates={_LEARNING_RATES.value}: not numbers") from None
    if not learning_rates or any(not lr > 0 for lr in learning_rates):
        raise app.UsageError(f"--learning_rates={_LEARNING_RATES.value}: give one or more numbers > 0")
    try:
        names = build.parse_tasks(_TASKS.value)
        protocol = eval_report.make_protocol(_SELECTION_SEEDS.value, _REPORT_SEEDS.value, base_seed=_SEED.value,
                                             selection_name="--selection_seeds", report_name="--report_seeds")
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    return protocol, learning_rates, names


def evaluate_task(task, objectives: dict, run_config, protocol, learning_rates) -> dict:
    """{learner: Evaluation} of every objective ({label: (objective, α)}) and the three baselines
    on one task (module docstring)."""
    config = td3_config(run_config)
    budget = ope.budget_for(config, _ENV_STEPS.value, _POINTS.value)
    candidates = ope.learning_rate_candidates(learning_rates, _DISCOUNT.value)
    meta = run_config["meta"]
    results = {}
    learners = [(label, ope.OffPolicyLearner("metagenrl", config, objective, meta["sequence_length"],
                                             meta["sequence_batch_size"]), alpha)
                for label, (objective, alpha) in objectives.items()]
    for label, learner, params in learners + [("TD3", ope.OffPolicyLearner("td3", config), None)]:
        with tqdm.tqdm(total=ope.work(len(candidates), protocol, budget), desc=f"{task.name} {label}",
                       leave=False) as bar:
            results[label] = ope.evaluate(learner, task, params, candidates, protocol, budget,
                                          progress=bar.update)
    on_policy = evaluation.Budget.from_env_steps(_ENV_STEPS.value, _NUM_ENVS.value, _UNROLL_LENGTH.value)
    ppo_rule, ppo_candidates = eval_report.ppo_rule_and_candidates(task, num_envs=_NUM_ENVS.value,
                                                                   discount=_DISCOUNT.value)
    a2c_candidates, _ = eval_report.a2c_candidates(task, discount=_DISCOUNT.value)
    for label, rule, cands in [("PPO", ppo_rule, ppo_candidates), ("A2C", a2c.A2C(), a2c_candidates)]:
        results[label] = eval_report.run_evaluation(task, rule, {}, cands, protocol, on_policy, label=label)
    for label, result in results.items():
        logging.info("%s %s: %s (%s)", task.name, label, result.summary(), result.chosen)
    return results


def report_lines(summary: dict, protocol: evaluation.Protocol, seen: set, provenances: dict,
                 env_steps: int) -> list[str]:
    """results.md (module docstring) from {task: {learner: Evaluation}}; provenances: {objective
    label: its rule's provenance} (the learned columns, in order)."""
    p = protocol
    learned = list(provenances)
    learners = learned + list(BASELINES)
    ci = f"{p.confidence:.0%} CI"
    kwargs = dict(n_bootstrap=p.n_bootstrap, confidence=p.confidence, seed=p.bootstrap_seed)
    lines = [
        f"# MetaGenRL meta-test (Table 2 protocol): final return on {len(p.report_seeds)} report seeds",
        "",
        f"{env_steps:,} environment steps per lifetime. Final return = mean of the last "
        f"{p.final_fraction:.0%} of the training-episode return curve. Settings chosen on selection seeds "
        f"{list(p.selection_seeds)}, numbers from report seeds {list(p.report_seeds)} (seed i: the same "
        f"physics for every learner). Mean [{ci}], percentile bootstrap over seeds; differences paired per "
        f"seed; verdict win/loss when the CI excludes 0. Objectives: {provenances}.",
        "",
        "| task | seen in meta-training | " + " | ".join(f"{n} mean [{ci}] (setting)" for n in learners) + " |",
        "|---|---|" + "---|" * len(learners),
    ]
    for name, results in summary.items():
        cells = [f"{results[n].summary()} ({results[n].chosen})" for n in learners]
        lines.append(f"| {name} | {'yes' if name in seen else 'no'} | " + " | ".join(cells) + " |")
    lines += ["", "| task | objective | " + " | ".join(f"− {b} [{ci}]" for b in BASELINES) + " |",
              "|---|---|" + "---|" * len(BASELINES)]
    for name, results in summary.items():
        for label in learned:
            cells = []
            for b in BASELINES:
                diff = evaluation.paired_difference(results[label].report_final, results[b].report_final,
                                                    **kwargs)
                cells.append(f"{diff} {evaluation.verdict(diff)}")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "Paper (Table 2, MuJoCo, 1M steps; Cheetah unseen after Hopper+Lunar): MetaGenRL 4843, "
              "PPO 1455, TD3 8315 (ordering TD3 > MetaGenRL > PPO).", ""]
    for name, results in summary.items():
        diverged = {n: int(r.report_diverged.sum()) for n, r in results.items() if r.report_diverged.any()}
        if diverged:
            lines.append(f"{name}: report lifetimes that diverged (non-finite loss): {diverged}.")
    lines += ["", "## Selection tables", ""]
    for name, results in summary.items():
        lines += [f"### {name}", ""]
        for n in learners:
            lines += eval_report.selection_table_lines(n, results[n])
    return lines


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    protocol, learning_rates, names = validate_flags()
    objectives, provenances, run_config = {}, {}, None
    for label, rule_dir in zip(objective_labels(_RULE.value), _RULE.value):
        objective, alpha, provenance, this_config = load_objective(rule_dir)
        if run_config is not None and (this_config["agent"] != run_config["agent"]
                                       or this_config["meta"]["tasks"] != run_config["meta"]["tasks"]):
            raise app.UsageError(f"--rule={_RULE.value}: the runs differ in their agents or meta-training "
                                 "tasks; evaluate them separately")
        run_config = this_config
        objectives[label], provenances[label] = (objective, alpha), provenance
    try:  # the off-policy budget needs the run's warm-up and policy delay: checked before any work
        ope.budget_for(td3_config(run_config), _ENV_STEPS.value, _POINTS.value)
    except ValueError as err:
        raise app.UsageError(f"--env_steps / --points: {err}") from None
    seen = set(build.parse_tasks(run_config["meta"]["tasks"]))
    tasks = [envs.make(name) for name in names]
    os.makedirs(_WORKDIR.value, exist_ok=True)
    summary, rows = {}, []
    for task in tasks:
        summary[task.name] = evaluate_task(task, objectives, run_config, protocol, learning_rates)
        for label, result in summary[task.name].items():
            rows += eval_report.final_return_rows(label, result)
        eval_report.write_final_returns(os.path.join(_WORKDIR.value, "final_returns.csv"), rows)
        eval_report.plot_curves(os.path.join(_WORKDIR.value, task.name.replace("/", "_") + ".png"),
                                task.name, summary[task.name])
        lines = report_lines(summary, protocol, seen, provenances, _ENV_STEPS.value)
        with open(os.path.join(_WORKDIR.value, "results.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
