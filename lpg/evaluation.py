"""Meta-testing protocol: one way to train fresh agents with a frozen rule and compare rules.

Every rule (LPG, A2C, ...) and every experiment goes through `evaluate`, which applies:

1. Paired seeds. Seed i's lifetime draws all its randomness from `fold_in(key(base_seed), i)`:
   that key splits into an init key (environment parameters E, θ0, environment resets; see
   `training.init_lifetime`) and a training key (update u uses `fold_in(training key, u)`; see
   `training.update_keys`). Nothing depends on a lifetime's position in a batch, on the batch
   size or on the chunking of updates, so seed i of two rules or two hyperparameter settings is
   the same lifetime up to the rule: differences between rules are paired per seed.
2. Hyperparameters chosen on seeds disjoint from the reported ones. Every candidate setting
   trains on the protocol's selection seeds; the one with the highest mean final return wins
   (ties: the first listed). Only that setting then trains on the report seeds, and only the
   report seeds' returns are reported, so the selection's optimism does not leak into them.
3. Statistics. Final return = mean of the last `final_fraction` of a lifetime's windowed
   episode-return curve (`final_returns`). Per rule: mean over report seeds with a percentile
   bootstrap confidence interval (`bootstrap_mean`); between rules: the paired difference
   A − B per report seed with its bootstrap interval, and a verdict (`compare`): "win" if the
   interval lies entirely above 0, "loss" if entirely below, "tie" otherwise.

The bootstrap is a plain percentile bootstrap over seeds (numpy, seeded): resample the S seeds
with replacement `n_bootstrap` times, take the mean of each resample, report the
(1 − c)/2 and (1 + c)/2 quantiles (Efron & Tibshirani 1993, ch. 13). With one task at a time
there are no strata, so this is what rliable's stratified bootstrap (Agarwal et al. 2021) reduces
to. rliable itself is not used: 1.2.0 needs arch < 8, and arch 7.2.0 fails at import under the
pinned pandas 3.1 (`deprecate_kwarg()` changed signature).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from envs import task as task_lib
from lpg import training
from lpg import types
from lpg.rules import base as rules_base

VERDICTS = ("win", "loss", "tie", "n/a")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The evaluation protocol shared by every rule (see the module docstring).

    selection_seeds: seed ids on which candidate settings are compared.
    report_seeds: seed ids of the reported numbers (disjoint from selection_seeds; 8 or more for
      intervals worth reading).
    final_fraction: fraction of the curve's last points averaged into the final return.
    curve_window: updates pooled per curve point (`training.mean_episode_return`).
    n_bootstrap: bootstrap resamples per interval.
    confidence: coverage of the intervals (e.g. 0.95).
    base_seed: PRNG seed of the base key every lifetime key is folded from.
    bootstrap_seed: seed of the bootstrap's numpy generator (intervals are deterministic).
    """

    selection_seeds: tuple[int, ...] = (0, 1, 2, 3)
    report_seeds: tuple[int, ...] = tuple(range(100, 108))
    final_fraction: float = 0.1
    curve_window: int = 10
    n_bootstrap: int = 10_000
    confidence: float = 0.95
    base_seed: int = 0
    bootstrap_seed: int = 0

    def __post_init__(self):
        for name in ("selection_seeds", "report_seeds"):
            seeds = tuple(int(s) for s in getattr(self, name))
            object.__setattr__(self, name, seeds)
            if not seeds:
                raise ValueError(f"Protocol.{name} must not be empty")
            if len(set(seeds)) != len(seeds):
                raise ValueError(f"Protocol.{name} has repeated seeds: {seeds}")
            if any(s < 0 or s >= 2**32 for s in seeds):
                raise ValueError(f"Protocol.{name} must be in [0, 2**32), got {seeds}")
        overlap = sorted(set(self.selection_seeds) & set(self.report_seeds))
        if overlap:
            raise ValueError(
                f"Protocol: selection_seeds and report_seeds overlap on {overlap}; report seeds "
                "must be disjoint from the seeds the hyperparameters were chosen on")
        if not 0 < self.final_fraction <= 1:
            raise ValueError(f"Protocol.final_fraction must be in (0, 1], got {self.final_fraction}")
        if self.curve_window < 1:
            raise ValueError(f"Protocol.curve_window must be >= 1, got {self.curve_window}")
        if self.n_bootstrap < 1:
            raise ValueError(f"Protocol.n_bootstrap must be >= 1, got {self.n_bootstrap}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"Protocol.confidence must be in (0, 1), got {self.confidence}")


@dataclasses.dataclass(frozen=True)
class Budget:
    """What one lifetime gets: `num_updates` updates on num_envs × unroll_length steps each."""

    num_updates: int
    num_envs: int
    unroll_length: int = 20

    def __post_init__(self):
        for name in ("num_updates", "num_envs", "unroll_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Budget.{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_env_steps(cls, env_steps: int, num_envs: int, unroll_length: int = 20) -> "Budget":
        """The most updates that fit in `env_steps` per lifetime (at least one)."""
        if env_steps <= 0:
            raise ValueError(f"env_steps must be > 0, got {env_steps}")
        return cls(max(1, env_steps // (num_envs * unroll_length)), num_envs, unroll_length)

    @property
    def env_steps(self) -> int:
        """Environment steps per lifetime."""
        return self.num_updates * self.num_envs * self.unroll_length

    @property
    def env_steps_per_point(self) -> np.ndarray:
        """[U] environment steps of a lifetime at the end of each update (x axis of a curve)."""
        return np.arange(1, self.num_updates + 1) * self.num_envs * self.unroll_length


def lifetime_keys(base_seed: int, seeds: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """([S] init keys, [S] training keys) of the given seed ids (module docstring, point 1)."""
    base = jax.random.key(base_seed)
    keys = jax.vmap(lambda s: jax.random.split(jax.random.fold_in(base, s)))(
        jnp.asarray(seeds, jnp.uint32))  # [S, 2]
    return keys[:, 0], keys[:, 1]


# Short names of HyperParams fields in setting names (SPEC notation).
SYMBOLS = {"learning_rate": "α_lr", "y_cost": "α_y", "v_cost": "α_V", "value_cost": "c_V",
           "entropy_cost": "c_H", "discount": "γ", "td_lambda": "λ", "meta_lr": "β"}


def setting_name(values: Mapping[str, float]) -> str:
    """{"learning_rate": 40, "y_cost": 0.5} -> "α_lr=40, α_y=0.5" (fields in the given order)."""
    return ", ".join(f"{SYMBOLS.get(k, k)}={float(v):g}" for k, v in values.items())


def hyper_grid(base: types.HyperParams, **axes: Sequence[float]) -> dict[str, types.HyperParams]:
    """Named candidate settings: `base` with every combination of the given values.

    An axis is a HyperParams field or the name of a rule hyperparameter already in `base.rule`.
    E.g. hyper_grid(h, learning_rate=(20, 40), y_cost=(0.1, 1)) with h.rule = {"y_cost": 0} gives
    4 settings named "α_lr=20, α_y=0.1", "α_lr=20, α_y=1", "α_lr=40, α_y=0.1", ... (first axis
    slowest; names from `setting_name`).
    """
    fields = [f.name for f in dataclasses.fields(types.HyperParams) if f.name != "rule"]
    unknown = sorted(set(axes) - set(fields) - set(base.rule))
    if unknown:
        raise ValueError(f"hyper_grid: unknown hyperparameters {unknown}; allowed: HyperParams "
                         f"fields {fields} and the rule's {sorted(base.rule)}")
    for name, values in axes.items():
        if not len(values):
            raise ValueError(f"hyper_grid: no values for {name}")
    combos = [{}]
    for name, values in axes.items():
        combos = [dict(c, **{name: float(v)}) for c in combos for v in values]

    def setting(combo):
        rule = {k: combo.get(k, v) for k, v in base.rule.items()}
        return base.replace(rule=rule, **{k: v for k, v in combo.items() if k in fields})

    grid = {setting_name(c): setting(c) for c in combos}
    if len(grid) != len(combos):
        raise ValueError(f"hyper_grid: repeated values in {axes}")
    return grid


def final_returns(curves: np.ndarray, final_fraction: float = 0.1) -> np.ndarray:
    """Mean over the last `final_fraction` of the update axis (last axis), NaN-aware.

    [..., U] -> [...]; NaN where a lifetime finished no episode in that stretch.
    """
    num_updates = curves.shape[-1]
    tail = max(1, int(round(num_updates * final_fraction)))
    with warnings.catch_warnings():  # seeds that never finished an episode give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(curves[..., -tail:], axis=-1)


class LifetimeRunner:
    """Trains lifetimes of one (task, rule, budget) with one compilation, any settings and seeds.

    Lifetimes run `lifetimes_per_call` at a time (a vmap, or `lax.map` chunks of
    `lifetimes_per_chunk` inside it); a batch that does not fill the last call is padded with
    copies whose results are dropped, so every call has the same shapes. Updates run
    `updates_per_chunk` per jitted call (the last, shorter chunk reuses the same executable).
    `extra_stats` names further per-update stats of `agent.agent_update` to keep (entropy,
    grad_norm, the rule's logs such as LPG's pi_hat_abs), returned by `stats` beside the rest.
    """

    def __init__(
        self,
        task: task_lib.Task,
        rule: rules_base.UpdateRule,
        budget: Budget,
        *,
        lifetimes_per_call: int,
        updates_per_chunk: int | None = None,
        lifetimes_per_chunk: int | None = None,
        base_seed: int = 0,
        extra_stats: Sequence[str] = (),
    ):
        if lifetimes_per_call <= 0:
            raise ValueError(f"lifetimes_per_call must be > 0, got {lifetimes_per_call}")
        if updates_per_chunk is not None and updates_per_chunk <= 0:
            raise ValueError(f"updates_per_chunk must be > 0, got {updates_per_chunk}")
        if lifetimes_per_chunk is not None and lifetimes_per_chunk <= 0:
            raise ValueError(f"lifetimes_per_chunk must be > 0, got {lifetimes_per_chunk}")
        self.task, self.rule, self.budget = task, rule, budget
        self.lifetimes_per_call = lifetimes_per_call
        self.chunk = min(updates_per_chunk or budget.num_updates, budget.num_updates)
        self.base_seed = base_seed
        agent = training.build_agent(task, rule.output_spec, grad_clip=rule.agent_grad_clip)
        chunk = self.chunk

        def init(init_keys):
            return training.init_lifetimes_from_keys(task, agent, init_keys, budget.num_envs, rule=rule)

        def run_chunk(states, train_keys, first_update, active, hyper, meta_params):
            states, stats = training.continue_training(
                task, rule, agent, meta_params, hyper, states, keys=train_keys,
                first_update=first_update, num_updates=chunk, unroll_length=budget.unroll_length,
                lifetimes_per_chunk=lifetimes_per_chunk, active_updates=active)
            out = {k: stats[k] for k in ("return_sum", "return_count", "loss", *extra_stats)}
            out["nonfinite"] = (~jnp.isfinite(stats["loss"])).astype(jnp.float32)  # divergence
            return states, out

        self._init = jax.jit(init)
        self._run_chunk = jax.jit(run_chunk, donate_argnums=0)

    def stats(
        self,
        meta_params: Any,
        hypers: Sequence[types.HyperParams],
        seeds: Sequence[int],
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Trains every (setting, seed) pair.

        Args:
          meta_params: the rule's parameters (shared).
          hypers: C settings, HyperParams with scalar leaves.
          seeds: S seed ids.
          progress: called with the number of lifetime-updates just completed (total C·S·U).
        Returns:
          {"return_sum", "return_count"}: [C, S, U] per-update sums/counts of completed episodes;
          "loss": [C, S, U] the rule's agent loss; "nonfinite": [C, S, U] 1 where that loss was
          not finite (diverged); each of `extra_stats`: [C, S, U].
        """
        pairs = [(c, s) for c in range(len(hypers)) for s in range(len(seeds))]
        init_keys, train_keys = lifetime_keys(self.base_seed, seeds)  # [S]
        stacked = jax.tree.map(lambda *x: jnp.asarray(x, jnp.float32), *hypers)  # leaves [C]
        num_updates, rows = self.budget.num_updates, []
        for start in range(0, len(pairs), self.lifetimes_per_call):
            group = pairs[start:start + self.lifetimes_per_call]
            real = len(group)
            group = group + [group[-1]] * (self.lifetimes_per_call - real)  # pad: same shapes
            c_idx = jnp.asarray([c for c, _ in group])
            s_idx = jnp.asarray([s for _, s in group])
            hyper = jax.tree.map(lambda x: x[c_idx], stacked)  # leaves [L]
            group_train_keys = train_keys[s_idx]
            states = self._init(init_keys[s_idx])
            chunks = []
            for first in range(0, num_updates, self.chunk):
                active = min(self.chunk, num_updates - first)
                states, out = self._run_chunk(
                    states, group_train_keys, jnp.int32(first), jnp.int32(active), hyper, meta_params)
                chunks.append({k: np.asarray(v)[:real, :active] for k, v in out.items()})
                if progress is not None:
                    progress(real * active)
            rows.append({k: np.concatenate([ch[k] for ch in chunks], axis=1) for k in chunks[0]})
            del states
        return {k: np.concatenate([r[k] for r in rows], axis=0).reshape(len(hypers), len(seeds), num_updates)
                for k in rows[0]}

    def curves(self, meta_params, hypers, seeds, *, curve_window: int, progress=None
               ) -> tuple[np.ndarray, np.ndarray]:
        """([C, S, U] windowed mean episode return per update (`training.mean_episode_return`),
        [C, S] whether the lifetime diverged (a non-finite loss at some update))."""
        return curves_of(self.stats(meta_params, hypers, seeds, progress), curve_window)


def curves_of(stats: Mapping[str, np.ndarray], curve_window: int) -> tuple[np.ndarray, np.ndarray]:
    """`LifetimeRunner.curves` from the runner's `stats` ([C, S, U] each)."""
    with jax.debug_nans(False):  # NaN before a lifetime's first episode is by design
        curves = np.asarray(training.mean_episode_return(stats, window=curve_window))
    return curves, stats["nonfinite"].any(axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: no ==
class Evaluation:
    """One rule on one task under a `Protocol`.

    task: the task's name.
    candidates: the C setting names, in the order given; candidate_hypers their HyperParams.
    selection_final: [C, S_sel] final return of every candidate on every selection seed (NaN
      when there was a single candidate: nothing to select, not trained).
    selection_diverged: [C, S_sel] bool, the lifetime's loss became non-finite.
    chosen: name of the selected setting; chosen_hyper its HyperParams.
    report_final: [S_rep] final returns of the chosen setting on the report seeds.
    report_curves: [S_rep, U] their curves.
    report_diverged: [S_rep] bool.
    env_steps: [U] environment steps per lifetime at each curve point.
    report_stats: {name: [S_rep, U]} the chosen setting's per-update `extra_stats` on the report
      seeds (e.g. metagrad's learned γ and λ); empty unless asked for.
    """

    task: str
    protocol: Protocol
    candidates: tuple[str, ...]
    candidate_hypers: tuple[types.HyperParams, ...]
    selection_final: np.ndarray
    selection_diverged: np.ndarray
    chosen: str
    chosen_hyper: types.HyperParams
    report_final: np.ndarray
    report_curves: np.ndarray
    report_diverged: np.ndarray
    env_steps: np.ndarray
    report_stats: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def selection_table(self) -> dict[str, float]:
        """Setting name -> mean final return over the selection seeds (NaN-aware)."""
        return dict(zip(self.candidates, _nanmean(self.selection_final, axis=1).tolist()))

    def summary(self) -> "Interval":
        """Mean final return over the report seeds with its bootstrap interval."""
        return bootstrap_mean(self.report_final, n_bootstrap=self.protocol.n_bootstrap,
                              confidence=self.protocol.confidence, seed=self.protocol.bootstrap_seed)


def _nanmean(x: np.ndarray, axis=None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def select(selection_final: np.ndarray, diverged: np.ndarray | None = None) -> int:
    """Index of the candidate with the highest mean final return over seeds.

    Args:
      selection_final: [C, S]; NaN entries (no finished episode) are left out of the mean, and
        a candidate without any finite entry ranks last.
      diverged: optional [C, S] bool; a candidate that diverged on any seed ranks below every
        candidate that did not (a setting that blows up on some seeds is not a tuned setting).
    Returns:
      the index of the first best candidate.
    """
    means = np.nan_to_num(_nanmean(selection_final, axis=1), nan=-np.inf)
    if diverged is not None:
        stable = ~np.asarray(diverged).any(axis=1)
        if stable.any():
            means = np.where(stable, means, -np.inf)
    return int(np.argmax(means))


def evaluate(
    task: task_lib.Task,
    rule: rules_base.UpdateRule,
    meta_params: Any,
    candidates: Mapping[str, types.HyperParams],
    protocol: Protocol,
    budget: Budget,
    *,
    updates_per_chunk: int | None = None,
    lifetimes_per_call: int | None = None,
    lifetimes_per_chunk: int | None = None,
    progress: Callable[[int], None] | None = None,
    extra_stats: Sequence[str] = (),
) -> Evaluation:
    """Selects a setting on the selection seeds (`select`), then trains it on the report seeds.

    One compilation per call (`LifetimeRunner`). With a single candidate the selection stage
    is skipped (its table then holds NaN).

    Args:
      task, rule, meta_params: what to evaluate.
      candidates: name -> HyperParams (scalar leaves), at least one.
      protocol: seeds and statistics.
      budget: updates × num_envs × unroll_length per lifetime.
      updates_per_chunk: updates per jitted call (progress granularity); None: all.
      lifetimes_per_call: lifetimes vmapped per call; None: the number of report seeds.
      lifetimes_per_chunk: None vmaps a call's lifetimes; n: `lax.map` chunks of n.
      progress: called with lifetime-updates completed; the total is
        `work(len(candidates), protocol, budget)`.
      extra_stats: per-update stats of the agent update (the rule's logs) to keep for the
        report seeds (`Evaluation.report_stats`).
    Returns:
      Evaluation.
    """
    if not candidates:
        raise ValueError("evaluate needs at least one candidate setting")
    names = tuple(candidates)
    hypers = [candidates[n] for n in names]
    runner = LifetimeRunner(
        task, rule, budget, lifetimes_per_call=lifetimes_per_call or len(protocol.report_seeds),
        updates_per_chunk=updates_per_chunk, lifetimes_per_chunk=lifetimes_per_chunk,
        base_seed=protocol.base_seed, extra_stats=extra_stats)
    curves = functools.partial(runner.curves, meta_params, curve_window=protocol.curve_window,
                               progress=progress)
    shape = (len(hypers), len(protocol.selection_seeds))
    if len(hypers) > 1:
        selection_curves, selection_diverged = curves(hypers, protocol.selection_seeds)
        selection_final = final_returns(selection_curves, protocol.final_fraction)
    else:
        selection_final, selection_diverged = np.full(shape, np.nan), np.zeros(shape, bool)
    best = select(selection_final, selection_diverged)
    report_stats = runner.stats(meta_params, [hypers[best]], protocol.report_seeds, progress)
    report_curves, report_diverged = curves_of(report_stats, protocol.curve_window)
    return Evaluation(
        task=task.name, protocol=protocol, candidates=names, candidate_hypers=tuple(hypers),
        selection_final=selection_final,
        selection_diverged=selection_diverged, chosen=names[best], chosen_hyper=hypers[best],
        report_final=final_returns(report_curves[0], protocol.final_fraction),
        report_curves=report_curves[0], report_diverged=report_diverged[0],
        env_steps=budget.env_steps_per_point,
        report_stats={name: report_stats[name][0] for name in extra_stats})


def work(num_candidates: int, protocol: Protocol, budget: Budget) -> int:
    """Lifetime-updates `evaluate` runs (the total of its progress callback)."""
    selection = num_candidates * len(protocol.selection_seeds) if num_candidates > 1 else 0
    return (selection + len(protocol.report_seeds)) * budget.num_updates


# ----------------------------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: no ==
class Interval:
    """A mean with its bootstrap confidence interval over n finite seeds (arrays: per point)."""

    mean: Any
    low: Any
    high: Any
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_mean(
    values: np.ndarray, *, n_bootstrap: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Mean over the leading (seed) axis with a percentile bootstrap interval.

    Resamples the S seeds with replacement `n_bootstrap` times (multinomial counts, so a
    [S, U] curve costs [n_bootstrap, U]); NaN entries (no episode finished yet) are left out of
    each point's mean. Deterministic for a given `seed`.

    Args:
      values: [S] or [S, U].
      n_bootstrap: resamples; confidence: coverage c, the interval is the [(1−c)/2, (1+c)/2]
        quantiles of the resampled means; seed: numpy generator seed.
    Returns:
      Interval with mean/low/high floats ([S] input) or [U] arrays, and n = number of seeds
      with a finite value (all NaN when fewer than one).
    """
    values = np.asarray(values, np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"values must be [S] or [S, U], got shape {values.shape}")
    scalar = values.ndim == 1
    if scalar:
        finite_rows = np.isfinite(values)
        values = values[finite_rows][:, None]  # [S', 1]
    num_seeds = values.shape[0]
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(0) / finite.sum(0)
    if num_seeds == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0)
    rng = np.random.Generator(np.random.PCG64(seed))
    counts = rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=n_bootstrap)
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = (counts @ filled) / (counts @ finite)  # [n_bootstrap, U]
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(resampled, [alpha, 1.0 - alpha], axis=0)
    n = int(finite.any(axis=1).sum())
    if scalar:
        return Interval(float(mean[0]), float(low[0]), float(high[0]), n)
    return Interval(mean, low, high, n)


def verdict(difference: Interval) -> str:
    """"win" if the interval of A − B is entirely > 0, "loss" if entirely < 0, else "tie"
    ("n/a" without data)."""
    if not (np.isfinite(difference.low) and np.isfinite(difference.high)):
        return "n/a"
    if difference.low > 0:
        return "win"
    if difference.high < 0:
        return "loss"
    return "tie"


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: no ==
class Comparison:
    """Rule A against rule B on one task: a, b per-rule intervals; difference = A − B paired
    per report seed (seeds where either is NaN are left out); verdict of A against B."""

    a: Interval
    b: Interval
    difference: Interval
    verdict: str


def paired_difference(
    a: np.ndarray, b: np.ndarray, *, n_bootstrap: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Bootstrap interval of mean(a − b) over seeds; a, b: [S] final returns of the same seeds."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must both be [S], got {a.shape} and {b.shape}")
    return bootstrap_mean(a - b, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)


def compare(a: Evaluation, b: Evaluation) -> Comparison:
    """A against B on the same task, report seeds and budget (refuses anything unpaired)."""
    if a.task != b.task:
        raise ValueError(f"cannot compare evaluations of different tasks: {a.task} vs {b.task}")
    if a.protocol.report_seeds != b.protocol.report_seeds or a.protocol.base_seed != b.protocol.base_seed:
        raise ValueError("cannot pair evaluations with different report seeds or base_seed: "
                         f"{a.protocol.report_seeds}/{a.protocol.base_seed} vs "
                         f"{b.protocol.report_seeds}/{b.protocol.base_seed}")
    if not np.array_equal(a.env_steps, b.env_steps):
        raise ValueError("cannot compare evaluations with different budgets (env steps per point differ)")
    p = a.protocol
    kwargs = dict(n_bootstrap=p.n_bootstrap, confidence=p.confidence, seed=p.bootstrap_seed)
    difference = paired_difference(a.report_final, b.report_final, **kwargs)
    return Comparison(a=a.summary(), b=b.summary(), difference=difference, verdict=verdict(difference))
