"""Meta-testing off-policy learners under the evaluation protocol of `lpg.evaluation`.

Two learners train fresh agents here, both with the TD3 agent of `lpg.td3` (deterministic policy,
twin critics, replay buffer; see that module):

  * "td3": TD3 itself (or DDPG with `TD3(ddpg=True)`), the hand-designed baseline;
  * "metagenrl": a frozen MetaGenRL objective L_α (lpg/rules/metagenrl.py) in place of TD3's
    actor loss: every iteration takes `policy_delay` environment + critic steps, then one Adam
    step of the policy on ∇_φ L_α over N truncated episodes from the buffer
    (`MetaGenRLTrainer.learn_iteration` with the DDPG weight 0 — at meta-test the objective
    alone trains the policy; the critic still learns by TD).

`evaluate` returns an `evaluation.Evaluation`, so off-policy and on-policy learners (PPO, A2C,
LPG through `evaluation.evaluate`) share the statistics, the comparison and the reports:

1. Paired seeds. Seed i's environment parameters E are drawn exactly as
   `training.init_lifetime` draws them: from the first of three splits of the init key of
   `evaluation.lifetime_keys(base_seed, [i])`. So seed i is the same physics for TD3, MetaGenRL,
   PPO and A2C. The agent's networks, buffer and noise use the training key (architectures
   differ, so θ0 cannot be shared across learners; it is shared across settings of one learner).
2. Settings chosen on the selection seeds (highest mean final return; a setting that diverged on
   any selection seed ranks last), then trained on the report seeds (`evaluation.select`).
3. Curves and final returns. A lifetime is `env_steps` environment steps per environment: the
   random-action warm-up (`TD3.warmup_steps`), then learning iterations of `policy_delay` steps.
   The learning part is cut into `points` equal blocks; curve point j is the mean return of the
   training episodes (acting with exploration noise) that ended in block j — the same quantity as
   the on-policy agents' curves (episodes of their stochastic training policies), NaN if none
   ended. Final return = mean of the last `final_fraction` of the points. A lifetime whose critic
   loss became non-finite is flagged as diverged.

Compilation: one jitted function per (task, learner, configuration), vmapped over the lifetimes
of a call and over their settings (learning rates are traced); a call runs one block of
iterations, so a progress bar can follow the blocks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs import task as task_lib
from lpg import evaluation
from lpg import td3
from lpg import types
from lpg.meta import metagenrl as metagenrl_meta
from lpg.rules import metagenrl as metagenrl_rule

LEARNERS = ("td3", "metagenrl")


@dataclasses.dataclass(frozen=True)
class OffPolicyBudget:
    """A lifetime of `env_steps` steps of each of the agent's environments (warm-up included),
    cut into `points` curve points. With one environment per agent (MetaGenRL's and TD3's B = 1)
    this is the same count as `evaluation.Budget.env_steps` of an on-policy agent.

    warmup_steps: random-action steps first. steps_per_iteration: environment steps per learning
    iteration (TD3's critic steps per actor step). The learning steps (env_steps − warm-up) must
    be a positive multiple of points × steps_per_iteration, so every point pools the same number
    of iterations.
    """

    env_steps: int
    points: int
    warmup_steps: int
    steps_per_iteration: int

    def __post_init__(self):
        learn = self.env_steps - self.warmup_steps
        unit = self.points * self.steps_per_iteration
        if self.points < 1 or learn <= 0 or learn % unit:
            raise ValueError(
                f"env_steps={self.env_steps} minus the warm-up ({self.warmup_steps}) must be a positive "
                f"multiple of points × steps per iteration = {self.points} × {self.steps_per_iteration}"
                f" = {unit}; got {learn} learning steps")

    @property
    def iterations_per_point(self) -> int:
        return (self.env_steps - self.warmup_steps) // (self.points * self.steps_per_iteration)

    @property
    def env_steps_per_point(self) -> np.ndarray:
        """[points] environment steps (per environment, warm-up included) at each point's end."""
        block = self.iterations_per_point * self.steps_per_iteration
        return self.warmup_steps + block * np.arange(1, self.points + 1)


def budget_for(config: td3.TD3, env_steps: int, points: int) -> OffPolicyBudget:
    return OffPolicyBudget(env_steps=env_steps, points=points, warmup_steps=config.warmup_steps,
                           steps_per_iteration=config.critic_steps_per_actor_step)


@dataclasses.dataclass(frozen=True)
class OffPolicyLearner:
    """What trains the agents: `kind` "td3" or "metagenrl" (the latter with its frozen objective
    and meta-training's sequence settings; module docstring)."""

    kind: str
    config: td3.TD3
    objective: metagenrl_rule.Objective | None = None
    sequence_length: int = 20
    sequence_batch_size: int = 100

    def __post_init__(self):
        if self.kind not in LEARNERS:
            raise ValueError(f"OffPolicyLearner.kind must be one of {LEARNERS}, got {self.kind!r}")
        if (self.kind == "metagenrl") != (self.objective is not None):
            raise ValueError("OffPolicyLearner: an objective is required for kind 'metagenrl' and "
                             f"allowed only for it (kind {self.kind!r})")

    @property
    def label(self) -> str:
        if self.kind == "metagenrl":
            return "MetaGenRL"
        return "DDPG" if self.config.ddpg else "TD3"

    def iteration_fn(self, task: task_lib.Task) -> Callable:
        """(meta_params, state, hyper) -> (state, stats with return_sum, return_count, critic_loss)."""
        if self.kind == "td3":
            return lambda meta_params, state, hyper: td3.train_iteration(self.config, task, state, hyper)
        trainer = metagenrl_meta.MetaGenRLTrainer(
            objective=self.objective, groups=(metagenrl_meta.AgentGroup(task, 1),), td3=self.config,
            sequence_length=self.sequence_length, sequence_batch_size=self.sequence_batch_size,
            inner_steps=1, ddpg_anneal_steps=0)

        def iteration(meta_params, state, hyper):
            state, _, _, logs = trainer.learn_iteration(task, meta_params, state, jnp.float32(0.0), hyper)
            return state, logs
        return iteration


def init_lifetimes(learner: OffPolicyLearner, task: task_lib.Task, seeds: Sequence[int],
                   base_seed: int) -> td3.TD3State:
    """[S] fresh agents after their warm-up, E paired with `training.init_lifetime` (point 1)."""
    init_keys, train_keys = evaluation.lifetime_keys(base_seed, seeds)

    def one(init_key, train_key):
        env_params = task.sample_params(jax.random.split(init_key, 3)[0])
        state = td3.init_state(learner.config, task, train_key, env_params=env_params)
        return td3.warmup(learner.config, task, state)[0]

    return jax.jit(jax.vmap(one))(init_keys, train_keys)


@functools.lru_cache(maxsize=16)
def _block_fn(learner: OffPolicyLearner, task: task_lib.Task, iterations: int):
    """jit(vmap over [L] lifetimes and their hyper) of `iterations` learning iterations; returns
    (states, return_sum [L], return_count [L], critic loss finite [L])."""
    iteration = learner.iteration_fn(task)

    def one(meta_params, state, hyper):
        state, stats = jax.lax.scan(lambda s, _: iteration(meta_params, s, hyper), state, None,
                                    length=iterations)
        return (state, jnp.sum(stats["return_sum"]), jnp.sum(stats["return_count"]),
                jnp.all(jnp.isfinite(stats["critic_loss"])))

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)), donate_argnums=1)


def run_lifetimes(learner: OffPolicyLearner, task: task_lib.Task, meta_params: Any,
                  hypers: Sequence[types.HyperParams], seeds: Sequence[int], budget: OffPolicyBudget,
                  *, base_seed: int = 0, progress: Callable[[int], None] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every setting of `hypers` on every seed: ([H, S, points] curves, [H, S] diverged)."""
    num_hypers, num_seeds = len(hypers), len(seeds)
    states = init_lifetimes(learner, task, list(seeds) * num_hypers, base_seed)
    stacked = jax.tree.map(lambda *xs: jnp.repeat(jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]),
                                                  num_seeds, axis=0), *hypers)  # leaves [H·S]
    block = _block_fn(learner, task, budget.iterations_per_point)
    curves, finite = [], np.ones(num_hypers * num_seeds, bool)
    for _ in range(budget.points):
        states, sums, counts, ok = block(meta_params, states, stacked)
        sums, counts = np.asarray(sums), np.asarray(counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            curves.append(np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan))
        finite &= np.asarray(ok)
        if progress is not None:
            progress(num_hypers * num_seeds)
    curves = np.stack(curves, axis=-1).reshape(num_hypers, num_seeds, budget.points)
    diverged = ~finite.reshape(num_hypers, num_seeds)
    return curves, diverged


def work(num_candidates: int, protocol: evaluation.Protocol, budget: OffPolicyBudget) -> int:
    """Lifetime-blocks `evaluate` runs (the total of its progress callback)."""
    selection = num_candidates * len(protocol.selection_seeds) if num_candidates > 1 else 0
    return (selection + len(protocol.report_seeds)) * budget.points


def evaluate(learner: OffPolicyLearner, task: task_lib.Task, meta_params: Any,
             candidates: Mapping[str, types.HyperParams], protocol: evaluation.Protocol,
             budget: OffPolicyBudget, *, progress: Callable[[int], None] | None = None
             ) -> evaluation.Evaluation:
    """Selects a setting on the selection seeds, trains it on the report seeds (module docstring).

    meta_params: α of a "metagenrl" learner (None for "td3"). candidates: name -> `td3.make_hyper`.
    """
    if not candidates:
        raise ValueError("evaluate needs at least one candidate setting")
    names = tuple(candidates)
    hypers = [candidates[n] for n in names]
    run = functools.partial(run_lifetimes, learner, task, meta_params, budget=budget,
                            base_seed=protocol.base_seed, progress=progress)
    shape = (len(hypers), len(protocol.selection_seeds))
    if len(hypers) > 1:
        selection_curves, selection_diverged = run(hypers, protocol.selection_seeds)
        selection_final = evaluation.final_returns(selection_curves, protocol.final_fraction)
    else:
        selection_final, selection_diverged = np.full(shape, np.nan), np.zeros(shape, bool)
    best = evaluation.select(selection_final, selection_diverged)
    report_curves, report_diverged = run([hypers[best]], protocol.report_seeds)
    return evaluation.Evaluation(
        task=task.name, protocol=protocol, candidates=names, candidate_hypers=tuple(hypers),
        selection_final=selection_final, selection_diverged=selection_diverged,
        chosen=names[best], chosen_hyper=hypers[best],
        report_final=evaluation.final_returns(report_curves[0], protocol.final_fraction),
        report_curves=report_curves[0], report_diverged=report_diverged[0],
        env_steps=budget.env_steps_per_point)


def learning_rate_candidates(learning_rates: Sequence[float], discount: float
                             ) -> dict[str, types.HyperParams]:
    """name -> `td3.make_hyper(α_lr, γ)` for each α_lr (policy and critics share it, as in the
    TD3 and MetaGenRL papers)."""
    return {evaluation.setting_name({"learning_rate": lr}): td3.make_hyper(lr, discount)
            for lr in learning_rates}
