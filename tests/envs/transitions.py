"""The step record the environment conformance tests share (test_registry, test_gymnax, test_brax)."""


def step_record(env, params, obs, state, action, key):
    """One `env.step` from (obs, state) with `action`; returns (next_obs, next_state, record), the
    record holding what every conformance check reads: the step's inputs, reward, both flags,
    the final observation and the times before and after (auto-reset shows as next_time == 0)."""
    next_obs, next_state, reward, terminated, truncated, info = env.step(key, state, action, params)
    record = dict(
        obs=obs,
        time=state.time,
        action=action,
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        final_obs=info["final_observation"],
        next_obs=next_obs,
        next_time=next_state.time,
    )
    return next_obs, next_state, record
