"""MetaGenRL meta-training: a population of TD3 agents shares one learned objective L_α
(Kirsch et al. 2020, Algorithm 1; the objective and its per-agent meta-loss: lpg/rules/metagenrl.py).

    trainer = MetaGenRLTrainer(objective, groups=(AgentGroup(task, 20),), td3=td3.TD3(...))
    init, step = trainer.jit_init(), trainer.jit_step()     # sharded over trainer.mesh, donated
    state = init(key)            # agents initialised and warmed up with random actions
    state, metrics = step(state)

One meta-step, for every agent of every group (vmapped, all in parallel as in Algorithm 1):

  1. `critic_steps_per_actor_step` × (one step of its B environments with π_φ + noise, stored in
     its replay buffer; one TD3 critic step on a fresh batch)       (td3.env_step, td3.critic_step)
  2. K minibatches of N truncated episodes (length T) from its buffer (replay.sample_sequences)
  3. one Adam step of φ on (1 − w) L_α(τ_1) + w · (−mean Q_θ1(s, π_φ(s)))  and the target update;
     w anneals linearly 1 → 0 over the first `ddpg_anneal_steps` learning steps (Appendix B.2:
     a random L_α would otherwise break the young policies), 0 after.
  4. its meta-gradient ∇_α of −Q_θ1(s, π_φ'(s)), φ' = φ after K inner steps on L_α (Eq. 6/8),
     at the φ just updated (Algorithm 1's order: critic, policy, then the objective's gradient).

then the meta-gradient averaged over all agents of all groups, clipped to global norm
`max_meta_grad_norm` (Table 4: 1.0) and one Adam step on α — skipped (and counted) if it is not
finite. So, as in the paper, the critic takes two steps per policy and objective step and every
environment step is matched by one critic step.

Groups: agents on environments with different observation or action shapes cannot share one vmap,
so the population is a tuple of `AgentGroup`s, one per task, each with its own networks; α is
shared because L_α does not depend on the shapes (lpg/rules/metagenrl.py). The mean over agents
weights every agent equally, whatever its group.

Devices (lpg/meta/sharding.py): the agent axis of every group is sharded over the 1-D mesh
`lifetimes` under `jax.shard_map`; α, its Adam state, the key and the step counter are
replicated; the meta-gradient's mean is one psum. Every agent carries its own PRNG key
(`td3.TD3State.key`), so an agent sees the same randomness on 1 or D devices.

Agent resets (`agent_lifetime` > 0; not in the paper, whose agents live their 1M steps once):
after each meta-step, group g replaces one agent every `agent_lifetime // L_g` meta-steps, round
robin, by a fresh one (new E ~ p(E), φ, θ, an empty buffer and its random-action warm-up), so
after the first round every agent lives `agent_lifetime` meta-steps and at any time the group's
ages are spread evenly over [0, agent_lifetime). The paper's agents are warm for all of
meta-training (DDPG-annealed, then trained for 1M steps), so L_α only ever sees improving
already-good policies, while meta-test starts from a random policy (its App. A: the objective
"forgets about the early stages of training a randomly initialized agent"; suggested fix: keep
such agents in the population). The fresh agent comes from (key, step, group) only, is built on
every device alike and lands in the slot of global index j, so 1 and D devices agree. The DDPG
weight stays a function of the meta-step: agents reset after the anneal learn by L_α alone.
Measured at this CPU's budget (BUILD_NOTES, "Agent resets"): resets made the frozen objective
worse at meta-test, not better; they are an option to study, off by default.

Not implemented: lifetime-varying hyperparameters (learning rates and γ are static fields, the
same for every agent).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import optax

from envs import task as task_lib
from lpg import replay
from lpg import td3
from lpg.meta import sharding
from lpg.rules import metagenrl

POPULATION_AXIS = sharding.POPULATION_AXIS


@dataclasses.dataclass(frozen=True)
class AgentGroup:
    """`num_agents` TD3 agents on one task (each samples its own environment parameters)."""

    task: task_lib.Task
    num_agents: int

    def __post_init__(self):
        if not isinstance(self.num_agents, int) or isinstance(self.num_agents, bool) or self.num_agents < 1:
            raise ValueError(f"AgentGroup {self.task.name!r}: num_agents must be an int >= 1, got "
                             f"{self.num_agents!r}")

    @property
    def num_lifetimes(self) -> int:
        """The launcher's name for a group's population size (launch/train_loop.py)."""
        return self.num_agents


@flax.struct.dataclass
class MetaGenRLTrainState:
    """Everything MetaGenRL meta-training needs to continue exactly (what a checkpoint stores).

    meta_params: α. meta_opt_state: its clipped-Adam state.
    agents: one `td3.TD3State` per group, leaves with a leading [L_g] agent axis.
    step: int32 meta-steps taken; skipped_updates: int32 α-updates skipped (non-finite gradient).
    """

    meta_params: Any
    meta_opt_state: Any
    agents: tuple
    key: jax.Array
    step: jax.Array
    skipped_updates: jax.Array


@dataclasses.dataclass(frozen=True)
class MetaGenRLTrainer(sharding.ShardedProgram):
    """Static MetaGenRL configuration (module docstring; defaults: the paper's Tables 3–4).

    objective: L_α's architecture. groups: the population. td3: the agents' TD3 settings
      (networks, critic batch, warm-up, noise, τ, policy delay).
    sequence_length: T of a truncated episode (20). sequence_batch_size: N episodes per
      minibatch (100). inner_steps: K (1–3; the paper finds 3 best).
    learning_rate: Adam step size of policies and critics (λ1 = λ2 = 1e-3). discount: γ.
    inner_learning_rate: λ3 of the plain gradient steps inside the meta-gradient (1e-3).
    meta_learning_rate: λ4, Adam on α (1e-3); max_meta_grad_norm: its global-norm clip (1.0).
    ddpg_anneal_steps: learning steps (per environment) over which the policy's gradient anneals
      from DDPG's to L_α's (10k in the paper); 0: L_α from the start.
    agent_lifetime: meta-steps an agent lives before it is replaced by a fresh one (staggered
      within each group; module docstring); 0: never (the paper).
    mesh: 1-D device mesh named `lifetimes` (sharding.population_mesh()); None: default device.
    """

    objective: metagenrl.Objective
    groups: tuple[AgentGroup, ...]
    td3: td3.TD3
    sequence_length: int = 20
    sequence_batch_size: int = 100
    inner_steps: int = 3
    learning_rate: float = 1e-3
    discount: float = 0.99
    inner_learning_rate: float = 1e-3
    meta_learning_rate: float = 1e-3
    max_meta_grad_norm: float = 1.0
    ddpg_anneal_steps: int = 10_000
    agent_lifetime: int = 0
    mesh: Mesh | None = None

    def __post_init__(self):
        if not self.groups:
            raise ValueError("MetaGenRLTrainer needs at least one agent group")
        for name in ("sequence_length", "sequence_batch_size", "inner_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MetaGenRLTrainer.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.ddpg_anneal_steps, int) or self.ddpg_anneal_steps < 0:
            raise ValueError(f"MetaGenRLTrainer.ddpg_anneal_steps must be an int >= 0, got "
                             f"{self.ddpg_anneal_steps!r}")
        if (not isinstance(self.agent_lifetime, int) or isinstance(self.agent_lifetime, bool)
                or self.agent_lifetime < 0):
            raise ValueError(f"MetaGenRLTrainer.agent_lifetime must be an int >= 0 (0: agents are never "
                             f"reset), got {self.agent_lifetime!r}")
        for group in self.groups:
            if 0 < self.agent_lifetime < group.num_agents:
                raise ValueError(
                    f"MetaGenRLTrainer.agent_lifetime={self.agent_lifetime} must be 0 or at least the "
                    f"{group.num_agents} agents of group {group.task.name!r} (one reset per meta-step at most)")
        for name in ("learning_rate", "inner_learning_rate", "meta_learning_rate", "max_meta_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"MetaGenRLTrainer.{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.discount < 1:
            raise ValueError(f"MetaGenRLTrainer.discount must be in (0, 1), got {self.discount!r}")
        slots = self.td3.buffer_capacity // self.td3.num_envs
        if self.sequence_length > min(self.td3.warmup_steps, slots):
            raise ValueError(
                f"MetaGenRLTrainer.sequence_length={self.sequence_length} must be at most the warm-up "
                f"({self.td3.warmup_steps} steps) and each environment's buffer row ({slots} slots), "
                "so that truncated episodes can be sampled from the first meta-step")
        if self.mesh is not None and self.mesh.axis_names != (POPULATION_AXIS,):
            raise ValueError(f"MetaGenRLTrainer.mesh must be 1-D with axis {POPULATION_AXIS!r}, got "
                             f"axes {self.mesh.axis_names}; use sharding.population_mesh()")
        sharding.check_divisible({g.task.name: g.num_agents for g in self.groups}, self.num_devices)

    # --- sizes ----------------------------------------------------------------------------------

    @property
    def rule(self) -> metagenrl.Objective:
        """What is learned (saved with α as the run's rule by the launcher)."""
        return self.objective

    @property
    def num_agents(self) -> int:
        return sum(group.num_agents for group in self.groups)

    def steps_per_meta_step(self, group: AgentGroup | None = None) -> int:
        """Env steps one agent takes per meta-step: policy_delay × B."""
        del group  # the same for every group
        return self.td3.critic_steps_per_actor_step * self.td3.num_envs

    def hyper(self):
        return td3.make_hyper(self.learning_rate, self.discount)

    def meta_optimiser(self) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(self.max_meta_grad_norm),
                           optax.adam(self.meta_learning_rate))

    # --- init -----------------------------------------------------------------------------------

    def init_agents(self, group: AgentGroup, key: jax.Array) -> td3.TD3State:
        """[L] fresh agents of one group after their random-action warm-up."""
        def one(agent_key):
            state = td3.init_state(self.td3, group.task, agent_key)
            return td3.warmup(self.td3, group.task, state)[0]
        return jax.vmap(one)(jax.random.split(key, group.num_agents))

    def reset_interval(self, group: AgentGroup) -> int:
        """Meta-steps between two resets in `group` (0: no resets)."""
        return self.agent_lifetime // group.num_agents if self.agent_lifetime else 0

    def fresh_agent(self, group_index: int, key: jax.Array, step: jax.Array) -> td3.TD3State:
        """The [1]-batched agent that a reset after meta-step `step` puts into group `group_index`:
        a function of (run key, step, group) only, so every device builds the same one."""
        agent_key = jax.random.fold_in(jax.random.fold_in(key, step), group_index)
        return self.init_agents(dataclasses.replace(self.groups[group_index], num_agents=1), agent_key)

    def reset_agents(self, group_index: int, agents: td3.TD3State, key: jax.Array,
                     step: jax.Array) -> td3.TD3State:
        """The group's local agents after meta-step `step` (1-based count of steps taken): agent
        j = (step / interval − 1) mod L replaced by a fresh one when `interval` divides `step`.

        Runs per device inside the shard_map: `agents` holds this device's slice of the group.
        """
        group = self.groups[group_index]
        interval = self.reset_interval(group)
        if not interval:
            return agents
        local = jax.tree.leaves(agents)[0].shape[0]
        first = jax.lax.axis_index(POPULATION_AXIS) * local  # global index of the first local agent
        slot = (step // interval - 1) % group.num_agents

        def replace(agents):
            fresh = self.fresh_agent(group_index, key, step)
            hit = (first + jnp.arange(local)) == slot  # [local]
            pick = lambda new, old: jnp.where(hit.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
            return jax.tree.map(pick, fresh, agents)

        return jax.lax.cond(step % interval == 0, replace, lambda agents: agents, agents)

    def init(self, key: jax.Array, meta_params: Any = None) -> MetaGenRLTrainState:
        key, k_params, *k_groups = jax.random.split(key, 2 + len(self.groups))
        if meta_params is None:
            meta_params = self.objective.init_params(k_params)
        return MetaGenRLTrainState(
            meta_params=meta_params,
            meta_opt_state=self.meta_optimiser().init(meta_params),
            agents=tuple(self.init_agents(g, k) for g, k in zip(self.groups, k_groups)),
            key=key, step=jnp.int32(0), skipped_updates=jnp.int32(0))

    def state_specs(self) -> MetaGenRLTrainState:
        """Agents sharded over `lifetimes`, everything else replicated."""
        return MetaGenRLTrainState(meta_params=P(), meta_opt_state=P(),
                                   agents=tuple(P(POPULATION_AXIS) for _ in self.groups),
                                   key=P(), step=P(), skipped_updates=P())

    # --- one agent ------------------------------------------------------------------------------

    def ddpg_weight(self, step: jax.Array) -> jax.Array:
        """w of step 3 at meta-step `step`: 1 → 0 linearly over `ddpg_anneal_steps` env steps."""
        if self.ddpg_anneal_steps == 0:
            return jnp.float32(0.0)
        learned = (step * self.td3.critic_steps_per_actor_step).astype(jnp.float32)
        return jnp.clip(1.0 - learned / self.ddpg_anneal_steps, 0.0, 1.0)

    def agent_step(self, group: AgentGroup, meta_params: Any, agent: td3.TD3State,
                   ddpg_weight: jax.Array) -> tuple[td3.TD3State, Any, dict[str, jax.Array]]:
        """Steps 1–4 of the module docstring for one (unbatched) agent.

        Returns:
          (agent, meta-gradient (α's tree), logs: return_sum, return_count, critic_loss, q_mean,
           objective_loss, meta_loss).
        """
        agent, minibatches, first_critic, logs = self.learn_iteration(
            group.task, meta_params, agent, ddpg_weight, self.hyper())
        nets = td3.make_networks(self.td3, td3.action_dim(group.task, agent.env_params))
        loss, meta_grad = jax.value_and_grad(metagenrl.meta_loss, argnums=1)(
            self.objective, meta_params, nets, agent.actor.params, first_critic, minibatches,
            self.inner_learning_rate)
        return agent, meta_grad, dict(logs, meta_loss=loss)

    def learn_iteration(self, task: task_lib.Task, meta_params: Any, agent: td3.TD3State,
                        ddpg_weight: jax.Array, hyper: Any
                        ) -> tuple[td3.TD3State, td3.Transition, Any, dict[str, jax.Array]]:
        """Steps 1–3 of the module docstring for one (unbatched) agent: what an agent does with a
        frozen L_α at meta-test too (ddpg_weight 0; lpg/offpolicy_evaluation.py).

        hyper: `td3.make_hyper` (α_lr of policy and critics, γ; traced).
        Returns:
          (agent, the K minibatches of truncated episodes [K, N, T, ...] sampled for this step,
           θ1 (the first critic's parameters), logs: return_sum, return_count, critic_loss,
           q_mean, objective_loss).
        """
        config = self.td3
        nets = td3.make_networks(config, td3.action_dim(task, agent.env_params))

        def act_and_fit_critic(state: td3.TD3State, _):
            state, env_stats = td3.env_step(config, task, state)
            key, sample_key, noise_key = jax.random.split(state.key, 3)
            batch = replay.sample(state.buffer, sample_key, config.batch_size)
            critic, logs = td3.critic_step(config, nets, state, batch, hyper, noise_key)
            return state.replace(critic=critic, key=key), dict(env_stats, **logs)

        agent, per_step = jax.lax.scan(act_and_fit_critic, agent, None,
                                       length=config.critic_steps_per_actor_step)

        key, sequence_key = jax.random.split(agent.key)
        k, n = self.inner_steps, self.sequence_batch_size
        sequences = replay.sample_sequences(agent.buffer, sequence_key, k * n, self.sequence_length)
        minibatches = jax.tree.map(lambda x: x.reshape((k, n) + x.shape[1:]), sequences)  # [K, N, T, ...]
        first_batch = jax.tree.map(lambda x: x[0], minibatches)
        first_critic = jax.tree.map(lambda x: x[0], agent.critic.params)

        def policy_loss(actor_params):
            learned = self.objective.loss(meta_params, nets, actor_params, first_critic, first_batch)
            obs = first_batch.obs.reshape((-1, first_batch.obs.shape[-1]))
            ddpg = -jnp.mean(nets.critic.apply(first_critic, obs, nets.actor.apply(actor_params, obs)))
            return (1.0 - ddpg_weight) * learned + ddpg_weight * ddpg, learned

        # L_α is not differentiated w.r.t. α here: the policy step only uses it.
        (_, objective_loss), grads = jax.value_and_grad(policy_loss, has_aux=True)(agent.actor.params)
        actor = td3._adam_step(agent.actor, grads, hyper.learning_rate)  # pylint: disable=protected-access
        agent = td3.update_targets(config, agent.replace(actor=actor, key=key))
        logs = dict(return_sum=jnp.sum(per_step["return_sum"]),
                    return_count=jnp.sum(per_step["return_count"]),
                    critic_loss=jnp.mean(per_step["critic_loss"]), q_mean=jnp.mean(per_step["q_mean"]),
                    objective_loss=objective_loss)
        return agent, minibatches, first_critic, logs

    # --- the meta-step --------------------------------------------------------------------------

    def step(self, state: MetaGenRLTrainState) -> tuple[MetaGenRLTrainState, dict[str, jax.Array]]:
        """One meta-step (module docstring). Pure; use `jit_step()` (sharded, donated)."""
        # check_vma=False as in MetaTrainer: replicated outputs are psums or come from replicated
        # inputs only.
        per_device = jax.shard_map(
            self._device_step, mesh=self._mesh(), in_specs=(self.state_specs(),),
            out_specs=(self.state_specs(), P()), check_vma=False)
        return per_device(state)

    def _device_step(self, state: MetaGenRLTrainState):
        ddpg_weight = self.ddpg_weight(state.step)
        total = lambda x: jax.lax.psum(jnp.sum(x, axis=0), POPULATION_AXIS)
        grads, agents, metrics, meta_loss_sum = None, [], {}, 0.0
        for index, (group, group_agents) in enumerate(zip(self.groups, state.agents)):
            new_agents, group_grads, logs = jax.vmap(
                lambda a, group=group: self.agent_step(group, state.meta_params, a, ddpg_weight)
            )(group_agents)
            agents.append(self.reset_agents(index, new_agents, state.key, state.step + 1))
            group_grads = jax.tree.map(lambda g: jnp.sum(g, axis=0), group_grads)
            grads = group_grads if grads is None else jax.tree.map(jnp.add, grads, group_grads)
            meta_loss_sum = meta_loss_sum + jnp.sum(logs["meta_loss"])
            count = total(logs["return_count"])
            name = group.task.name
            metrics[f"{name}/recent_return"] = jnp.where(
                count > 0, total(logs["return_sum"]) / jnp.maximum(count, 1.0), jnp.nan)
            metrics[f"{name}/episodes"] = count
            for key in ("critic_loss", "q_mean", "objective_loss", "meta_loss"):
                metrics[f"{name}/{key}"] = total(logs[key]) / group.num_agents
        # The mean over all agents of all groups (and devices): the one all-reduce of ∇_α.
        grads, meta_loss = jax.tree.map(lambda x: jax.lax.psum(x, POPULATION_AXIS) / self.num_agents,
                                        (grads, meta_loss_sum))
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(grad_norm)
        updates, opt_state = self.meta_optimiser().update(grads, state.meta_opt_state, state.meta_params)
        keep_if_bad = lambda new, old: jnp.where(finite, new, old)
        meta_params = jax.tree.map(keep_if_bad, optax.apply_updates(state.meta_params, updates),
                                   state.meta_params)
        opt_state = jax.tree.map(keep_if_bad, opt_state, state.meta_opt_state)
        metrics.update(meta_loss=meta_loss, meta_grad_norm=grad_norm,
                       skipped=(~finite).astype(jnp.int32), ddpg_weight=ddpg_weight)
        new_state = MetaGenRLTrainState(
            meta_params=meta_params, meta_opt_state=opt_state, agents=tuple(agents),
            key=state.key, step=state.step + 1,
            skipped_updates=state.skipped_updates + (~finite).astype(jnp.int32))
        return new_state, metrics
