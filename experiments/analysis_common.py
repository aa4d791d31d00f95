"""Shared pieces of the LPG analyses of Figs. 4–6 (experiments/analysis_y_{grid,regression,
convergence}.py): loading the rule, held-out tabular grid layouts, the exact MDP of a tabular grid
world (policy evaluation, policy iteration) and "policy evaluation with the rule": updating only an
agent's y (or a TD(λ) value table) with the policy table frozen.

Held-out layouts. Meta-training and `launch.evaluate` draw lifetimes from keys folded from
`jax.random.key(0)`-based streams; the analyses draw theirs from `fold_in(key(HELD_OUT_BASE), seed)`,
a stream of their own. A tabular/dense layout (4 objects on 121 cells, two action spaces) has ~4e8
configurations, so a repeat of a layout the rule was meta-trained on is possible but negligible.

Episode time limits are ignored by the exact values: `grid_mdp` is the infinite-horizon MDP.
That is the quantity the rule and TD(λ) estimate too, since both bootstrap across a time-limit
truncation (lpg/rules/lpg.py, lpg/returns.py).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

import envs
from envs import gridworld
from launch import checkpoints
from lpg import agent as agent_lib
from lpg import types
from lpg.rules import base as rules_base

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RULE = os.path.join(REPO_ROOT, "experiments", "pretrained", "lpg_tabular")
HELD_OUT_BASE = 20_200_604  # base seed of the analyses' layouts (module docstring)
MIN_VISITS = 10  # states visited fewer times during policy evaluation are left out of the numbers


# ----------------------------------------------------------------------------- rule and task

def load_rule(path: str = DEFAULT_RULE) -> tuple[Any, Any, dict]:
    """(rule, meta_params, provenance) of a saved rule; it must have a y head (LPG)."""
    rule, meta_params, provenance = checkpoints.load_rule(path)
    if not getattr(rule, "y_dim", 0) or not getattr(rule, "y_softmax", False):
        raise ValueError(f"the analyses need an LPG rule with a softmax y; {path} holds {rule!r}")
    return rule, meta_params, provenance


def tabular_task(name: str) -> envs.Task:
    """A registered tabular grid-world task (the exact MDP needs integer states of a GridWorld)."""
    task = envs.make(name)
    if not isinstance(task.env, gridworld.GridWorld) or task.env.mode != "tabular":
        raise ValueError(f"task {name!r} is not a tabular grid world (try tabular/dense)")
    return task


def prepare(workdir: str, rule_path: str, task_name: str) -> tuple[Any, Any, dict, envs.Task]:
    """Every script's start: (rule, meta_params, provenance, task), both checked before the
    workdir is created (bad input leaves nothing behind)."""
    rule, meta_params, provenance = load_rule(rule_path)
    task = tabular_task(task_name)
    os.makedirs(workdir, exist_ok=True)
    return rule, meta_params, provenance, task


def held_out_keys(seed: int, num: int) -> jax.Array:
    """[num] lifetime keys of the analyses' own stream (module docstring)."""
    return jax.random.split(jax.random.fold_in(jax.random.key(HELD_OUT_BASE), seed), num)


def sample_layouts(task: envs.Task, keys: jax.Array) -> Any:
    """Environment params (object cells, action space) of one layout per key, stacked [L]."""
    return jax.vmap(task.sample_params)(keys)


def index_tree(tree: Any, i: int) -> Any:
    """The i-th entry of every leaf (one layout of a stacked [L] pytree), as numpy."""
    return jax.tree.map(lambda x: np.asarray(x[i]), tree)


def lpg_hyper(discount: float, learning_rate: float, y_cost: float) -> types.HyperParams:
    """HyperParams of an LPG agent (α_lr, α_y); γ is the rule's discount input."""
    return types.HyperParams(learning_rate=learning_rate, discount=discount, entropy_cost=0.0,
                             value_cost=0.0, td_lambda=0.0, rule={"y_cost": y_cost})


def td_hyper(discount: float, learning_rate: float, value_cost: float, td_lambda: float
             ) -> types.HyperParams:
    """HyperParams of the A2C rule used as TD(λ): the value table's SGD step is α_lr · c_V."""
    return types.HyperParams(learning_rate=learning_rate, discount=discount, entropy_cost=0.0,
                             value_cost=value_cost, td_lambda=td_lambda)


# ------------------------------------------------------------------------------ exact MDP

@dataclasses.dataclass(frozen=True)
class TabularMDP:
    """The infinite-horizon MDP of one tabular grid layout, as arrays (S states, A actions,
    K = 2**N respawn outcomes per step).

    rewards: [S, A] reward of taking a in s (deterministic in a grid world).
    continue_probs: [S, A] probability that the episode does not terminate.
    next_states: [S, A, K] successor state of each respawn outcome; next_probs: [S, A, K] their
      probabilities (sum to 1 over K).
    action_mask: [A] the lifetime's valid actions (invalid ones act as "stay").
    start_states: the states an episode starts in, uniformly (all objects present).
    """

    rewards: np.ndarray
    continue_probs: np.ndarray
    next_states: np.ndarray
    next_probs: np.ndarray
    action_mask: np.ndarray
    start_states: np.ndarray

    @property
    def num_states(self) -> int:
        return self.rewards.shape[0]


def grid_mdp(env: gridworld.GridWorld, params: gridworld.GridParams) -> TabularMDP:
    """Enumerates the dynamics of envs/gridworld.py (its module docstring) for one layout.

    Per (s, a): the move or collect is deterministic, a hit object pays r and terminates with
    ε_term; every object absent at the start of the step respawns independently with ε_respawn.
    tests/experiments/test_analyses.py checks the result against Monte-Carlo rollouts of the env.
    """
    if env.mode != "tabular":
        raise ValueError("grid_mdp needs a tabular grid world")
    p = jax.tree.map(np.asarray, params)
    n, width = env.num_objects, env.width
    num_outcomes = 2**n
    states = np.arange(env.num_states)
    cell, bits = states // num_outcomes, states % num_outcomes
    obj = np.arange(n)
    present = ((bits[:, None] >> obj) & 1).astype(bool)  # [S, n]

    actions = np.arange(gridworld.NUM_ACTIONS)
    collect_mode = bool(p.collect_actions)
    num_valid = gridworld.NUM_ACTIONS if collect_mode else gridworld.NUM_MOVES
    action = np.where(actions < num_valid, actions, gridworld.STAY)  # invalid actions stay
    is_collect = action >= gridworld.NUM_MOVES
    direction = action - gridworld.NUM_MOVES * is_collect
    row = cell[:, None] // width + gridworld._ROW_OFFSET[direction][None]  # [S, A]
    col = cell[:, None] % width + gridworld._COL_OFFSET[direction][None]
    in_grid = (row >= 0) & (row < env.height) & (col >= 0) & (col < width)
    target = np.where(in_grid, row * width + col, -1)
    can_enter = in_grid & ~p.walls[np.maximum(target, 0)]
    agent = np.where(~is_collect[None] & can_enter, target, cell[:, None])  # [S, A]
    collect_cell = np.where(is_collect[None], target, -1 if collect_mode else agent)
    hit = present[:, None, :] & (p.object_cells[None, None, :] == collect_cell[..., None])  # [S, A, n]
    rewards = np.sum(hit * p.rewards, axis=-1)
    continue_probs = 1.0 - np.sum(hit * p.term_probs, axis=-1)

    # Respawn outcome k: the set of objects that reappear (only absent ones can).
    respawned = ((np.arange(num_outcomes)[:, None] >> obj) & 1).astype(bool)  # [K, n]
    absent = ~present[:, None, :]  # [S, 1, n]
    per_object = np.where(absent, np.where(respawned, p.respawn_probs, 1.0 - p.respawn_probs),
                          np.where(respawned, 0.0, 1.0))  # [S, K, n]
    outcome_probs = np.prod(per_object, axis=-1)  # [S, K]
    remaining = present[:, None, :] & ~hit  # [S, A, n]
    new_present = remaining[:, :, None, :] | respawned[None, None]  # [S, A, K, n]
    next_states = agent[..., None] * num_outcomes + np.sum(new_present << obj, axis=-1)
    next_probs = np.broadcast_to(outcome_probs[:, None, :], next_states.shape)
    start_cells = p.start_cells[: int(p.num_start_cells)]
    return TabularMDP(rewards=rewards.astype(np.float64), continue_probs=continue_probs,
                      next_states=next_states, next_probs=np.ascontiguousarray(next_probs),
                      action_mask=actions < num_valid,
                      start_states=start_cells * num_outcomes + num_outcomes - 1)


def evaluate_policy(mdp: TabularMDP, policy: np.ndarray, discounts: Sequence[float]) -> np.ndarray:
    """Exact V^π for each discount, [len(discounts), S]: solves (I − γ P_π) V = r_π.

    policy: [S, A] action probabilities (rows sum to 1).
    """
    num_states = mdp.num_states
    weights = policy[..., None] * mdp.continue_probs[..., None] * mdp.next_probs  # [S, A, K]
    rows = np.broadcast_to(np.arange(num_states)[:, None, None], weights.shape)
    # Sparse: each state has at most A·K successors; csr sums the duplicate (row, col) entries.
    transition = sparse.csr_matrix((weights.ravel(), (rows.ravel(), mdp.next_states.ravel())),
                                   shape=(num_states, num_states))
    reward = np.sum(policy * mdp.rewards, axis=1)
    identity = sparse.identity(num_states, format="csc")
    return np.stack([sparse_linalg.spsolve((identity - g * transition).tocsc(), reward)
                     for g in discounts])


def action_values(mdp: TabularMDP, values: np.ndarray, discount: float) -> np.ndarray:
    """Q(s, a) = r(s, a) + γ P(continue) E[V(s')], [S, A]."""
    expected_next = np.sum(mdp.next_probs * values[mdp.next_states], axis=-1)
    return mdp.rewards + discount * mdp.continue_probs * expected_next


def optimal_policy(mdp: TabularMDP, discount: float, max_iterations: int = 100
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Policy iteration with exact evaluation: (greedy deterministic policy [S, A], its Q [S, A])."""
    mask = mdp.action_mask[None]
    policy = np.broadcast_to(mask / mask.sum(), mdp.rewards.shape)
    greedy = None
    for _ in range(max_iterations):
        q = action_values(mdp, evaluate_policy(mdp, policy, [discount])[0], discount)
        new_greedy = np.argmax(np.where(mask, q, -np.inf), axis=1)
        if greedy is not None and np.array_equal(new_greedy, greedy):
            break
        greedy = new_greedy
        policy = np.eye(mdp.rewards.shape[1])[greedy]
    return policy, q


def soft_greedy(policy: np.ndarray, action_mask: np.ndarray, epsilon: float) -> np.ndarray:
    """(1 − ε) `policy` + ε uniform over the valid actions: near-optimal, yet it keeps visiting
    every state it can reach (and π(a|s) < 1, as the rule saw in meta-training)."""
    uniform = action_mask / action_mask.sum()
    return (1.0 - epsilon) * policy + epsilon * uniform[None]


def policy_logits(policy: np.ndarray) -> np.ndarray:
    """A logits table whose softmax is `policy` (zero-probability actions get a large negative)."""
    return np.log(np.maximum(policy, 1e-12)).astype(np.float32)


# -------------------------------------------------------------- policy evaluation with a rule

@dataclasses.dataclass(frozen=True)
class Learner:
    """A rule and the agent it trains during policy evaluation (both static)."""

    rule: rules_base.UpdateRule
    agent: agent_lib.Agent


def freeze_policy(params: Any, logits: jax.Array) -> Any:
    """`params` with its policy table replaced by `logits`. Setting it back after every update
    freezes π exactly: under SGD the policy and y/value tables are separate leaves, so the
    y/value update is the same as with a zero policy gradient."""
    return {"params": {**params["params"], "logits": logits}}


def init_learner_state(learner: Learner, key: jax.Array, logits: jax.Array,
                       y_init_scale: float = 0.0) -> agent_lib.AgentState:
    """A fresh agent with policy table `logits`; its y table (if any) is N(0, scale²) logits
    (scale 0: the agent's own all-zero init, y uniform)."""
    state = agent_lib.init_agent_state(learner.agent, key, jnp.zeros((), jnp.int32), learner.rule)
    params = freeze_policy(state.params, logits)
    if y_init_scale and "y" in params["params"]:
        y = params["params"]["y"]
        params["params"]["y"] = y_init_scale * jax.random.normal(jax.random.fold_in(key, 7), y.shape)
    return state.replace(params=params)


def make_policy_evaluation(
    env: gridworld.GridWorld, learners: Sequence[Learner], *, num_updates: int, snapshot_every: int,
    num_envs: int, unroll_length: int,
) -> Callable:
    """A pure function running `num_updates` rule updates of every learner with π frozen.

    Every update unrolls `unroll_length` steps in `num_envs` environments with the frozen policy,
    then *each* learner takes one `lpg.agent.agent_update` with its own rule on that same rollout,
    and its policy table is set back (`freeze_policy`). So all learners see identical experience.

    Returns run(env_params, logits [S, A], meta_params (per learner), hypers (per learner),
    states (per learner), key) -> (states, snapshots, visits): snapshots is, per learner, its
    non-policy tables ({"y": ...} / {"value": ...}) stacked [num_updates/snapshot_every + 1, ...]
    (index 0 before any update); visits [S] counts the states of all rollouts.
    """
    if num_updates <= 0 or snapshot_every <= 0 or num_updates % snapshot_every:
        raise ValueError(f"updates ({num_updates}) must be a positive multiple of snapshot_every "
                         f"({snapshot_every})")
    num_states = env.num_states

    def tables(state):
        return {k: v for k, v in state.params["params"].items() if k != "logits"}

    def run(env_params, logits, meta_params, hypers, states, key):
        carry_key, run_key = jax.random.split(key)
        carry = agent_lib.init_env_carry(env, env_params, carry_key, num_envs)
        acting_params = freeze_policy(states[0].params, logits)

        def update(inner, step_key):
            states, carry, visits = inner
            rollout, carry = agent_lib.unroll(learners[0].agent, acting_params, env, env_params,
                                              carry, step_key, unroll_length)
            visits = visits.at[rollout.observations[:-1].ravel()].add(1.0)
            new_states = []
            for learner, mp, hyper, state in zip(learners, meta_params, hypers, states):
                state, _, _ = agent_lib.agent_update(learner.rule, learner.agent, mp, state, rollout, hyper)
                new_states.append(state.replace(params=freeze_policy(state.params, logits)))
            return (tuple(new_states), carry, visits), None

        def chunk(inner, chunk_key):
            inner, _ = jax.lax.scan(update, inner, jax.random.split(chunk_key, snapshot_every))
            return inner, tuple(tables(s) for s in inner[0])

        inner = (tuple(states), carry, jnp.zeros((num_states,), jnp.float32))
        inner, snaps = jax.lax.scan(chunk, inner, jax.random.split(run_key, num_updates // snapshot_every))
        first = tuple(tables(s) for s in states)
        snaps = jax.tree.map(lambda a, s: jnp.concatenate([a[None], s]), first, snaps)
        return inner[0], snaps, inner[2]

    return run


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def mean_kl(logits0: np.ndarray, logits1: np.ndarray, states: np.ndarray,
            weights: np.ndarray | None = None) -> float:
    """Mean over `states` of KL(y0(s) ‖ y1(s)), y = softmax(logits [S, m]); weighted by
    `weights[states]` (e.g. visit counts) if given, else uniform."""
    log0 = log_softmax(logits0[states].astype(np.float64))
    log1 = log_softmax(logits1[states].astype(np.float64))
    kl = np.sum(np.exp(log0) * (log0 - log1), axis=-1)
    return float(np.average(kl, weights=None if weights is None else weights[states]))


def all_present_states(env: gridworld.GridWorld) -> np.ndarray:
    """[H·W] state index of the agent on each cell with every object present (Fig. 4's slice)."""
    num_outcomes = 2**env.num_objects
    return np.arange(env.num_cells) * num_outcomes + num_outcomes - 1
