"""Paired comparison of two rules from two `launch.evaluate` or `launch.train_agent` runs of the
same protocol.

    python -m launch.compare_runs --a runs/eval_es --a_rule LPG --label_a "LPG (ES)" \
        --b runs/eval_backprop --b_rule LPG --label_b "LPG (backprop)" --out runs/es_vs_backprop.md

Each run's `eval_final_returns.csv` (launch.evaluate) or `final_returns.csv` (launch.train_agent) holds one final return per (task, rule, setting, seed, role);
for every task in both runs, the report-seed returns of rule `a_rule` in run A and of `b_rule` in
run B are paired by seed (lpg/evaluation.py: same tasks, environments, θ0 and keys per seed when
both runs used the same --seed and report seeds) and summarised as mean [95% bootstrap CI] each
and of A − B, with the verdict (win / loss / tie: does the paired CI exclude zero?). Refuses runs
whose report seeds differ for a task. Also used to compare two rules against one baseline
(`--a_rule A2C` in one of them).
"""

from __future__ import annotations

import collections
import csv
import os

from absl import app
from absl import flags
import numpy as np

from lpg import evaluation

_A = flags.DEFINE_string("a", None, "Workdir of the first launch.evaluate run.")
_B = flags.DEFINE_string("b", None, "Workdir of the second launch.evaluate run.")
_A_RULE = flags.DEFINE_string("a_rule", "LPG", "Rule column of run A to compare (LPG, A2C, PPO).")
_B_RULE = flags.DEFINE_string("b_rule", "LPG", "Rule column of run B to compare.")
_LABEL_A = flags.DEFINE_string("label_a", "A", "Name of A in the table.")
_LABEL_B = flags.DEFINE_string("label_b", "B", "Name of B in the table.")
_OUT = flags.DEFINE_string("out", "", "Also write the markdown table here.")


def report_returns(workdir: str, rule: str) -> dict[str, dict[int, float]]:
    """{task: {seed: final return}} of `rule`'s report seeds in a launch.evaluate (or
    launch.train_agent) workdir."""
    paths = [os.path.join(workdir, name) for name in ("eval_final_returns.csv", "final_returns.csv")]
    path = next((p for p in paths if os.path.isfile(p)), None)
    if path is None:
        raise FileNotFoundError(f"neither of {paths} exists: is {workdir} a launch.evaluate or "
                                "launch.train_agent workdir?")
    out = collections.defaultdict(dict)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["rule"] == rule and row["role"] == "report":
                out[row["task"]][int(row["seed"])] = float(row["final_return"])
    if not out:
        raise ValueError(f"no report rows of rule {rule!r} in {path}")
    return dict(out)


def compare(a: dict[str, dict[int, float]], b: dict[str, dict[int, float]], label_a: str,
            label_b: str) -> list[str]:
    """Markdown lines: per shared task, A and B with CIs and the paired A − B with its verdict."""
    tasks = [t for t in a if t in b]
    if not tasks:
        raise ValueError(f"the runs share no task: {sorted(a)} vs {sorted(b)}")
    lines = [f"| task | seeds | {label_a} | {label_b} | {label_a} − {label_b} (paired) | verdict |",
             "|---|---|---|---|---|---|"]
    for task in tasks:
        if sorted(a[task]) != sorted(b[task]):
            raise ValueError(f"{task}: report seeds differ ({sorted(a[task])} vs {sorted(b[task])}); "
                             "only the same seeds pair")
        seeds = sorted(a[task])
        va, vb = (np.array([d[task][s] for s in seeds]) for d in (a, b))
        diff = evaluation.paired_difference(va, vb)
        lines.append(f"| {task} | {seeds[0]}–{seeds[-1]} ({len(seeds)}) | {evaluation.bootstrap_mean(va)} | "
                     f"{evaluation.bootstrap_mean(vb)} | {diff} | {evaluation.verdict(diff)} |")
    return lines


def main(argv):
    del argv
    if not (_A.value and _B.value):
        raise app.UsageError("--a and --b (two launch.evaluate workdirs) are required")
    lines = compare(report_returns(_A.value, _A_RULE.value), report_returns(_B.value, _B_RULE.value),
                    _LABEL_A.value, _LABEL_B.value)
    text = "\n".join(lines) + "\n"
    print(text)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            f.write(f"A = {_LABEL_A.value} ({_A_RULE.value} in {_A.value}); "
                    f"B = {_LABEL_B.value} ({_B_RULE.value} in {_B.value})\n\n" + text)


if __name__ == "__main__":
    app.run(main)
