"""Evaluation reports: restore a rule, evaluate it and A2C under one protocol, write results.

No flags here (launch/evaluate.py parses them). Both rules go through `lpg.evaluation.evaluate`
with the same `Protocol` (paired seeds, settings chosen on selection seeds, numbers from the
disjoint report seeds), budget, num_envs and T:
  * LPG's candidates: the task's α_lr grid × α_y grid (SPEC Table 3; 9 settings), or a fixed
    value on either axis when one is given.
  * A2C's: its tuned setting from experiments/configs/a2c_tuned.py (one candidate); a task with
    no tuned entry sweeps experiments/configs/a2c.py's grid on the selection seeds instead, and
    the report says so.
  * PPO's (optional, `with_ppo`): experiments/configs/ppo.py's sweep (α_lr × c_V × c_H, 12
    settings) on the selection seeds, with that file's PPO settings (epochs, minibatches, ...).
    PPO gets its own comparison LPG − PPO and verdict.
Outputs in the workdir: results.md (per task: env steps, A2C and LPG mean [CI] with their
settings, paired difference LPG − A2C [CI], verdict, the paper's numbers; the win/tie/loss count;
the selection tables), eval_final_returns.csv (every task, rule, setting, seed, role and final
return) and <task>.png (mean curves over report seeds with bootstrap CI bands).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import time
from typing import Any, Mapping, Sequence

from absl import logging
import ml_collections
import tqdm

import envs
from envs import task as task_lib
from envs.wrappers import transforms
from experiments import paper_results
from experiments.configs import a2c as a2c_config
from experiments.configs import a2c_tuned
from experiments.configs import ppo as ppo_config
from launch import build
from launch import checkpoints
from lpg import evaluation
from lpg import rules
from lpg import types
from lpg.rules import a2c

# A bare count n of seeds means these ids: selection 0..n−1, report 100..100+n−1.
SELECTION_SEEDS_START = 0
REPORT_SEEDS_START = 100
# Bootstrap resamples of a curve's CI band (per point; the tables use the protocol's n_bootstrap).
BAND_BOOTSTRAP = 2000


def parse_seeds(spec: Any, *, name: str, count_start: int) -> tuple[int, ...]:
    """Seed ids from a spec: "0-3" (a range, inclusive), "0,5,9" (a list, ranges allowed inside)
    or a bare count "n" / int n (ids count_start .. count_start + n − 1).

    Raises ValueError naming `name`, the value and what is allowed.
    """
    allowed = (f"allowed: a range 'a-b' (e.g. '0-3'), a list 'a,b,c', or a count n ≥ 1 "
               f"(= {count_start}..{count_start}+n-1)")
    if isinstance(spec, bool):
        raise ValueError(f"{name}={spec!r} is not a seed spec; {allowed}")
    if isinstance(spec, int):
        spec = str(spec)
    text = str(spec).strip()
    if re.fullmatch(r"\d+", text):
        count = int(text)
        if count < 1:
            raise ValueError(f"{name}={spec!r}: a count of seeds must be ≥ 1; {allowed}")
        return tuple(range(count_start, count_start + count))
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part) or re.fullmatch(r"(\d+)", part)
        if not match:
            raise ValueError(f"{name}={spec!r}: cannot read {part!r}; {allowed}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.lastindex == 2 else low
        if high < low:
            raise ValueError(f"{name}={spec!r}: range {part!r} is empty (end before start); {allowed}")
        seeds.extend(range(low, high + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name}={spec!r} repeats a seed; {allowed}")
    return tuple(seeds)


def make_protocol(selection_seeds: Any, report_seeds: Any, *, base_seed: int = 0,
                  selection_name: str = "selection_seeds", report_name: str = "report_seeds",
                  **kwargs) -> evaluation.Protocol:
    """A Protocol from seed specs (see `parse_seeds`); errors name the given flag/config names."""
    selection = parse_seeds(selection_seeds, name=selection_name, count_start=SELECTION_SEEDS_START)
    report = parse_seeds(report_seeds, name=report_name, count_start=REPORT_SEEDS_START)
    overlap = sorted(set(selection) & set(report))
    if overlap:
        raise ValueError(f"{selection_name}={selection_seeds!r} and {report_name}={report_seeds!r} "
                         f"share seeds {overlap}; report seeds must be disjoint from selection seeds")
    return evaluation.Protocol(selection_seeds=selection, report_seeds=report, base_seed=base_seed, **kwargs)


def rule_from_checkpoint(checkpoint_dir: str, step: int | None = None):
    """(rule, meta_params, provenance) from a launch.train checkpoint (restores only what it needs)."""
    if not os.path.isdir(checkpoint_dir):
        raise checkpoints.CheckpointError(f"checkpoint directory {checkpoint_dir} does not exist")
    ckpt = checkpoints.Checkpointer(checkpoint_dir)
    try:
        saved = ml_collections.ConfigDict(ckpt.restore_config(step))
        trainer = build.make_trainer(saved)
        # abstract_state() carries this process's (single-device) shardings, so a checkpoint
        # written on any device count restores here (launch.train splits a CPU into devices).
        state, _ = ckpt.restore(trainer.abstract_state(), step)
    finally:
        ckpt.close()
    provenance = {"checkpoint": os.path.abspath(checkpoint_dir), "step": int(state.step)}
    return trainer.rule, state.meta_params, provenance


# ------------------------------------------------------------------------------------ candidates


def lpg_candidates(task: task_lib.Task, rule, *, discount: float = 0.99, td_lambda: float = 0.95,
                   learning_rate: float = 0.0, y_cost: float = 0.0) -> dict[str, types.HyperParams]:
    """A learned rule's settings: the task's α_lr grid × each grid of the rule's own
    hyperparameters (`rule.hyper_grid`; LPG: α_y). learning_rate / y_cost > 0 fix that axis."""
    fixed = {"y_cost": y_cost} if y_cost > 0 else {}
    unknown = sorted(set(fixed) - set(rule.hyper_grid))
    if unknown:
        raise ValueError(f"{type(rule).__name__} has no hyperparameter {unknown}; its own are "
                         f"{sorted(rule.hyper_grid)}")
    axes = {name: (fixed[name],) if name in fixed else grid for name, grid in rule.hyper_grid.items()}
    base = types.HyperParams(learning_rate=0.0, discount=discount, entropy_cost=0.0,
                             value_cost=0.0, td_lambda=td_lambda, rule={name: 0.0 for name in axes})
    return evaluation.hyper_grid(
        base, learning_rate=(learning_rate,) if learning_rate > 0 else task.learning_rates, **axes)


def with_eq7_baseline(rule):
    """The LPG `rule` with Eq. 7's meta-test baseline switched on (the agent gets a value head
    f_θ(s) trained towards π̂, and π̂ − f_θ(s) weights ∇log π). η is unchanged. Raises
    ValueError for rules without that option."""
    if not hasattr(rule, "use_baseline"):
        raise ValueError(f"--eq7_baseline: {type(rule).__name__} has no Eq. 7 baseline option (LPG only)")
    return dataclasses.replace(rule, use_baseline=True)


def a2c_hyper(learning_rate, value_cost, entropy_cost, discount, td_lambda) -> types.HyperParams:
    return types.HyperParams(learning_rate=float(learning_rate), discount=float(discount),
                             entropy_cost=float(entropy_cost), value_cost=float(value_cost),
                             td_lambda=float(td_lambda))


def a2c_sweep(task: task_lib.Task, *, learning_rates: Sequence[float] = (),
              value_costs: Sequence[float], entropy_costs: Sequence[float], discount: float,
              td_lambda: float, discounts: Sequence[float] = (),
              rule_grid: Mapping[str, Sequence[float]] | None = None) -> dict[str, types.HyperParams]:
    """A2C's sweep: α_lr (empty: the task's grid) × value_cost × entropy_cost, then × γ when
    `discounts` are given (else γ = `discount`; metagrad: its initial γ) and × each grid of
    `rule_grid` (the rule's `hyper_grid`; metagrad: η's step size β)."""
    rule_grid = dict(rule_grid or {})
    base = a2c_hyper(0.0, 0.0, 0.0, discount, td_lambda).replace(rule={name: 0.0 for name in rule_grid})
    axes = dict(learning_rate=tuple(learning_rates) or task.learning_rates,
                value_cost=tuple(value_costs), entropy_cost=tuple(entropy_costs))
    if discounts:
        axes["discount"] = tuple(discounts)
    axes.update({name: tuple(grid) for name, grid in rule_grid.items()})
    return evaluation.hyper_grid(base, **axes)


def a2c_candidates(task: task_lib.Task, tuned: Mapping[str, Sequence[float]] | None = None,
                   *, discount: float = 0.99, td_lambda: float = 0.95
                   ) -> tuple[dict[str, types.HyperParams], str]:
    """(candidates, source): the tuned setting of `task` (default table: a2c_tuned.TUNED) or,
    without an entry, experiments/configs/a2c.py's sweep grid. source is "tuned" or "swept"."""
    tuned = a2c_tuned.TUNED if tuned is None else tuned
    if task.name in tuned:
        values = dict(zip(a2c_tuned.FIELDS, tuned[task.name], strict=True))
        name = evaluation.setting_name(values)
        return {name: a2c_hyper(**values)}, "tuned"
    sweep = a2c_config.get_config().sweep
    return a2c_sweep(task, learning_rates=sweep.learning_rates, value_costs=sweep.value_costs,
                     entropy_costs=sweep.entropy_costs, discount=discount, td_lambda=td_lambda), "swept"


# The rules without meta-parameters that launch/train_agent.py tunes (experiments/configs/<kind>.py),
# with the labels reports use for them: the hand-designed ones and metagrad, whose γ, λ are
# learned within each lifetime (per-lifetime rule state, not meta-parameters).
BASELINE_LABELS = {"a2c": "A2C", "ppo": "PPO", "metagrad": "MetaGrad"}
# How reports name a learned rule, by KIND (unlisted kinds: the KIND in capitals).
LEARNED_LABELS = {"lpg": "LPG", "lpg_v": "LPG-V", "epg": "EPG"}


def learned_label(rule) -> str:
    """The learned rule's column name in results.md and eval_final_returns.csv ("LPG", "EPG", ...)."""
    return LEARNED_LABELS.get(rule.KIND, rule.KIND.upper())


def baseline_rule(config) -> rules.base.UpdateRule:
    """The rule config.rule names (one of BASELINE_LABELS), built from the config section of that
    name (config.ppo for PPO, config.metagrad for MetaGrad; A2C has none). Bad values: ValueError
    naming them."""
    kind = config.get("rule", "a2c")
    if kind not in BASELINE_LABELS:
        raise ValueError(f"config.rule must be one of {tuple(BASELINE_LABELS)}, got {kind!r}")
    return rules.make_rule(kind, dict(config.get(kind, {})))


def ppo_rule_and_candidates(task: task_lib.Task, *, num_envs: int, discount: float = 0.99,
                            td_lambda: float = 0.95) -> tuple[Any, dict[str, types.HyperParams]]:
    """(PPO rule, candidates): experiments/configs/ppo.py's PPO settings and sweep grid."""
    config = ppo_config.get_config()
    rule = baseline_rule(config)
    if num_envs % rule.num_minibatches:
        raise ValueError(f"PPO splits num_envs={num_envs} environments into {rule.num_minibatches} "
                         "minibatches (experiments/configs/ppo.py); use a multiple of it")
    sweep = config.sweep
    return rule, a2c_sweep(task, learning_rates=sweep.learning_rates, value_costs=sweep.value_costs,
                           entropy_costs=sweep.entropy_costs, discount=discount, td_lambda=td_lambda)


# ---------------------------------------------------------------------------------- run + report


def run_evaluation(task, rule, meta_params, candidates, protocol, budget, *, label: str,
                   updates_per_chunk: int | None = 50, lifetimes_per_call: int | None = None,
                   lifetimes_per_chunk: int | None = None,
                   extra_stats: Sequence[str] = ()) -> evaluation.Evaluation:
    """`evaluation.evaluate` with a progress bar and a log line."""
    start = time.perf_counter()
    total = evaluation.work(len(candidates), protocol, budget)
    with tqdm.tqdm(total=total, desc=f"{task.name} {label}", unit="upd", unit_scale=True,
                   leave=False) as bar:
        result = evaluation.evaluate(
            task, rule, meta_params, candidates, protocol, budget,
            updates_per_chunk=updates_per_chunk, lifetimes_per_call=lifetimes_per_call,
            lifetimes_per_chunk=lifetimes_per_chunk, progress=bar.update, extra_stats=extra_stats)
    logging.info("%s %s: chose %s, report final %s (%.0fs)", task.name, label, result.chosen,
                 result.summary(), time.perf_counter() - start)
    return result


def final_return_rows(rule_name: str, result: evaluation.Evaluation) -> list[tuple]:
    """(task, rule, setting, seed, role, final_return) for every selection and report lifetime."""
    rows = []
    if len(result.candidates) > 1:  # a single candidate is not trained on the selection seeds
        for c, name in enumerate(result.candidates):
            for s, seed in enumerate(result.protocol.selection_seeds):
                final = float(result.selection_final[c, s])
                rows.append((result.task, rule_name, name, seed, "selection", final))
    for s, seed in enumerate(result.protocol.report_seeds):
        rows.append((result.task, rule_name, result.chosen, seed, "report", float(result.report_final[s])))
    return rows


FINAL_RETURN_HEADER = ("task", "rule", "setting", "seed", "role", "final_return")


def write_final_returns(path: str, rows: Sequence[tuple]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FINAL_RETURN_HEADER)
        writer.writerows(rows)


def plot_curves(path: str, task: str, results: Mapping[str, evaluation.Evaluation]) -> None:
    """Mean curve over the report seeds with a bootstrap CI band, one line per rule."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        p = result.protocol
        band = evaluation.bootstrap_mean(
            result.report_curves, n_bootstrap=min(p.n_bootstrap, BAND_BOOTSTRAP),
            confidence=p.confidence, seed=p.bootstrap_seed)
        ax.plot(result.env_steps, band.mean, label=f"{name} ({result.chosen})")
        ax.fill_between(result.env_steps, band.low, band.high, alpha=0.25)
        confidence = p.confidence
        seeds = len(p.report_seeds)
    ax.set_title(f"{task}: mean and {confidence:.0%} bootstrap CI over {seeds} report seeds", fontsize=9)
    ax.set_xlabel("environment steps per agent")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def selection_table_lines(rule_name: str, result: evaluation.Evaluation, note: str = "") -> list[str]:
    """Markdown: every candidate's mean final return on the selection seeds (chosen in bold)."""
    seeds = result.protocol.selection_seeds
    if len(result.candidates) == 1:
        return [f"{rule_name}: one candidate, {result.chosen} {note}(no selection run).", ""]
    lines = [f"{rule_name} on selection seeds {_seed_text(seeds)}{note}:", "",
             "| setting | mean final (selection) |", "|---|---|"]
    for name, value in result.selection_table.items():
        cell = f"{value:.3f}"
        lines.append(f"| **{name}** | **{cell}** |" if name == result.chosen else f"| {name} | {cell} |")
    return lines + [""]


def _seed_text(seeds: Sequence[int]) -> str:
    """(0, 1, 2, 3) -> "0–3"; (0,) -> "0"; (1, 5) -> "1,5"."""
    if len(seeds) > 1 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ",".join(map(str, seeds))


def evaluate_rule_on_tasks(
    rule, meta_params, *, tasks, protocol: evaluation.Protocol, env_steps: int, num_envs: int,
    workdir: str, discount: float = 0.99, td_lambda: float = 0.95, learning_rate: float = 0.0,
    y_cost: float = 0.0, unroll_length: int = 20, a2c_tuned_table: Mapping | None = None,
    updates_per_chunk: int | None = 50, lifetimes_per_chunk: int | None = None,
    provenance: dict | None = None, with_ppo: bool = False, reward_scale: float = 1.0,
) -> dict:
    """Runs the LPG-vs-A2C comparison on `tasks`; writes CSV, plots and results.md to `workdir`.

    Args:
      rule, meta_params: the learned rule (η).
      tasks: comma-separated registry names.
      protocol: seeds and statistics, shared by both rules.
      env_steps: per lifetime (0: each task's lifetime); num_envs, unroll_length: B and T.
      discount, td_lambda: LPG's γ and λ (and A2C's when it is swept).
      learning_rate, y_cost: > 0 fixes LPG's α_lr / α_y instead of selecting it from the grid.
      a2c_tuned_table: task -> A2C setting (default experiments/configs/a2c_tuned.TUNED).
      provenance: where the rule came from (written into results.md).
      with_ppo: also evaluate PPO (swept; module docstring) and compare LPG with it.
      reward_scale: every rule trains on rewards × reward_scale (`envs.wrappers.transforms`; the
        task is then named "<name>-r<scale>" and returns are reported on the scaled rewards).
    Returns:
      {task: {L: Evaluation, "A2C": Evaluation, "comparison": Comparison (L vs A2C),
              "learned": L, "a2c_source": "tuned" | "swept", "env_steps": int}} plus, with PPO,
      "PPO": Evaluation and "comparison_ppo": Comparison (L vs PPO); L = `learned_label(rule)`
      ("LPG" for LPG, "EPG" for EPG, ...).
    """
    task_names = build.parse_tasks(tasks)
    if num_envs <= 0 or env_steps < 0:
        raise ValueError(f"num_envs must be > 0 and env_steps >= 0, got {num_envs}, {env_steps}")
    if with_ppo:  # refuse a bad minibatch split before any work
        ppo_rule_and_candidates(envs.make(task_names[0]), num_envs=num_envs)
    os.makedirs(workdir, exist_ok=True)
    table = a2c_tuned.TUNED if a2c_tuned_table is None else a2c_tuned_table
    learned = learned_label(rule)
    summary, rows = {}, []
    for task_name in task_names:
        task = transforms.scale_rewards(envs.make(task_name), reward_scale)
        name = task.name
        budget = evaluation.Budget.from_env_steps(env_steps or task.lifetime_steps, num_envs, unroll_length)
        a2c_cands, a2c_source = a2c_candidates(task, table, discount=discount, td_lambda=td_lambda)
        lpg_cands = lpg_candidates(task, rule, discount=discount, td_lambda=td_lambda,
                                   learning_rate=learning_rate, y_cost=y_cost)
        kwargs = dict(protocol=protocol, budget=budget, updates_per_chunk=updates_per_chunk,
                      lifetimes_per_chunk=lifetimes_per_chunk)
        results = {
            "A2C": run_evaluation(task, a2c.A2C(), {}, a2c_cands, label="A2C", **kwargs),
            learned: run_evaluation(task, rule, meta_params, lpg_cands, label=learned, **kwargs),
        }
        if with_ppo:
            ppo_rule, ppo_cands = ppo_rule_and_candidates(
                task, num_envs=num_envs, discount=discount, td_lambda=td_lambda)
            results["PPO"] = run_evaluation(task, ppo_rule, {}, ppo_cands, label="PPO", **kwargs)
        for rule_name, result in results.items():
            rows += final_return_rows(rule_name, result)
        plot_curves(os.path.join(workdir, name.replace("/", "_") + ".png"), name, results)
        summary[name] = dict(results, comparison=evaluation.compare(results[learned], results["A2C"]),
                             learned=learned, a2c_source=a2c_source, env_steps=budget.env_steps,
                             lifetime=task.lifetime_steps)
        if with_ppo:
            summary[name]["comparison_ppo"] = evaluation.compare(results[learned], results["PPO"])
    write_final_returns(os.path.join(workdir, "eval_final_returns.csv"), rows)
    placeholder = a2c_tuned_table is None and a2c_tuned.PLACEHOLDER
    lines = report_lines(summary, protocol, provenance=provenance, a2c_placeholder=placeholder)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def report_lines(summary: Mapping[str, dict], protocol: evaluation.Protocol, *,
                 provenance: dict | None = None, a2c_placeholder: bool = False) -> list[str]:
    """results.md: the comparison table, the win/tie/loss line, notes and the selection tables."""
    p = protocol
    ci = f"{p.confidence:.0%} CI"
    learned = next(iter(summary.values()), {}).get("learned", "LPG")  # one learned rule per report
    lines = [
        f"# {learned} vs A2C: final return on {len(p.report_seeds)} report seeds",
        "",
        f"Final return = mean of the last {p.final_fraction:.0%} of the episode-return curve "
        f"(window {p.curve_window} updates). Settings chosen on selection seeds "
        f"{_seed_text(p.selection_seeds)}; numbers from the disjoint report seeds "
        f"{_seed_text(p.report_seeds)} (seed i: the same environment, θ0 and keys for both rules). "
        f"Mean [{ci}], percentile bootstrap over seeds ({p.n_bootstrap:,} resamples); "
        f"difference = {learned} − A2C paired per report seed; verdict win/loss when its CI excludes 0, "
        f"else tie. Provenance: {provenance or {}}",
        "",
        f"| task | env steps (of lifetime) | A2C mean [{ci}] (setting) | {learned} mean [{ci}] (setting) "
        f"| {learned} − A2C [{ci}] | verdict | paper A2C | paper LPG |",
        "|---|---|---|---|---|---|---|---|",
    ]
    counts = {v: 0 for v in evaluation.VERDICTS}
    for name, res in summary.items():
        comparison = res["comparison"]
        counts[comparison.verdict] += 1
        paper = paper_results.FIG3_FINAL_RETURN.get(name, (float("nan"),) * 3)
        a2c_setting = res["A2C"].chosen + (", swept" if res["a2c_source"] == "swept" else ", tuned")
        lines.append(
            f"| {name} | {res['env_steps']:,} ({res['env_steps'] / res['lifetime']:.1%}) | "
            f"{comparison.b} ({a2c_setting}) | {comparison.a} ({res[learned].chosen}) | "
            f"{comparison.difference} | {comparison.verdict} | {paper[0]:g} | {paper[2]:g} |")
    no_data = f" ({counts['n/a']} without data)" if counts["n/a"] else ""
    lines += ["", f"{learned} wins on {counts['win']}, ties on {counts['tie']}, loses on {counts['loss']} "
                  f"of {len(summary)} tasks{no_data}.", ""]
    with_ppo = [name for name, res in summary.items() if "PPO" in res]
    if with_ppo:
        lines += [f"{learned} vs PPO (PPO swept on the selection seeds: experiments/configs/ppo.py, "
                  f"{dict(ppo_config.get_config().ppo)}):", "",
                  f"| task | PPO mean [{ci}] (setting) | {learned} mean [{ci}] | {learned} − PPO [{ci}] | verdict |",
                  "|---|---|---|---|---|"]
        ppo_counts = {v: 0 for v in evaluation.VERDICTS}
        for name in with_ppo:
            comparison = summary[name]["comparison_ppo"]
            ppo_counts[comparison.verdict] += 1
            lines.append(f"| {name} | {comparison.b} ({summary[name]['PPO'].chosen}) | {comparison.a} | "
                         f"{comparison.difference} | {comparison.verdict} |")
        lines += ["", f"{learned} wins on {ppo_counts['win']}, ties on {ppo_counts['tie']}, loses on "
                      f"{ppo_counts['loss']} of {len(with_ppo)} tasks against PPO.", ""]
    swept = [name for name, res in summary.items() if res["a2c_source"] == "swept"]
    for name, res in summary.items():
        for rule_name in [r for r in ("A2C", "PPO", learned) if r in res]:
            diverged = int(res[rule_name].report_diverged.sum())
            if diverged:
                lines.append(f"{name}: {diverged} of {len(p.report_seeds)} {rule_name} report "
                             "lifetimes diverged (non-finite loss).")
    if swept:
        lines.append(f"A2C had no tuned entry in experiments/configs/a2c_tuned.py for {', '.join(swept)}: "
                     "it was swept on the selection seeds with experiments/configs/a2c.py's grid.")
    if a2c_placeholder and len(swept) < len(summary):
        lines.append("WARNING: experiments/configs/a2c_tuned.py holds PLACEHOLDER values from a small "
                     "machinery check; regenerate it with the sweep command in its docstring.")
    lines += ["", "## Selection tables", ""]
    for name, res in summary.items():
        lines += [f"### {name}", ""]
        lines += selection_table_lines("A2C", res["A2C"], "(tuned, experiments/configs/a2c_tuned.py) "
                                       if res["a2c_source"] == "tuned" else " (no tuned entry: swept)")
        if "PPO" in res:
            lines += selection_table_lines("PPO", res["PPO"], " (swept, experiments/configs/ppo.py)")
        lines += selection_table_lines(learned, res[learned])
    return lines


def evaluate_trained_rule(rule_dir: str, config, workdir: str) -> dict:
    """Used by `launch.train --evaluate` on the rule it just exported (`<workdir>/rule`, the final
    η; reading it needs no collective checkpoint restore, so process 0 of a multi-host run can do
    it alone). The config's eval section decides tasks, budgets and seeds: eval.seeds report seeds
    (100, 101, ...), eval.selection_seeds selection seeds (0, 1, ...; a count or a spec such as
    "0-3"), eval.learning_rate / eval.y_cost > 0 fix LPG's α_lr / α_y (0: the grids of the task / rule).
    The evaluation's base seed is the protocol's default (0), not config.seed: rules meta-trained
    with different seeds are evaluated on the same lifetimes, so they stay paired."""
    protocol = make_protocol(config.eval.get("selection_seeds", 2), config.eval.seeds,
                             selection_name="config.eval.selection_seeds",
                             report_name="config.eval.seeds")
    rule, meta_params, provenance = checkpoints.load_rule(rule_dir)
    return evaluate_rule_on_tasks(
        rule, meta_params, tasks=config.eval.tasks, protocol=protocol,
        env_steps=int(config.eval.env_steps), num_envs=int(config.eval.num_envs),
        workdir=os.path.join(workdir, "eval"), learning_rate=float(config.eval.get("learning_rate", 0.0)),
        y_cost=float(config.eval.get("y_cost", 0.0)), provenance=provenance)
