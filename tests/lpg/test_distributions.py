"""Tests for lpg/distributions.py: hand values and scipy as oracles, masks, bounds, normalisation
of the squashed density, conformance (jit == eager, vmap == loop, leading dims) and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from envs import base
from lpg import distributions

KEY = jax.random.key(0)


# ----------------------------------------------------------------------------------------------
# MaskedCategorical
# ----------------------------------------------------------------------------------------------

# Unnormalised weights 1, 2, (3: masked), 4 → π = [1, 2, 0, 4] / 7.
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0])
MASK = np.array([True, True, False, True])
P_VALID = np.array([1.0, 2.0, 0.0, 4.0]) / 7.0


def test_categorical_hand_values_with_any_invalid_logit():
    # One row per value the invalid action's logit may hold: high, MASKED_LOGIT-like, -inf.
    invalid_logits = np.array([100.0, -1e9, -np.inf])[:, None]
    logits = jnp.asarray(np.where(MASK, np.log(WEIGHTS) + 5.0, invalid_logits), jnp.float32)  # [3, 4]
    dist = distributions.MaskedCategorical(logits, jnp.asarray(MASK))
    np.testing.assert_allclose(dist.probs, np.tile(P_VALID, (3, 1)), rtol=1e-6)
    assert np.all(np.asarray(dist.probs[:, 2]) == 0.0)
    np.testing.assert_allclose(dist.log_prob(jnp.full(3, 3)), np.full(3, np.log(4 / 7)), rtol=1e-6)
    np.testing.assert_allclose(dist.log_prob(jnp.full(3, 0)), np.full(3, np.log(1 / 7)), rtol=1e-6)
    # Entropy of the softmax renormalised over the valid subset {0, 1, 3}.
    np.testing.assert_allclose(dist.entropy(), np.full(3, stats.entropy([1.0, 2.0, 4.0])), rtol=1e-6)
    np.testing.assert_array_equal(dist.mode(), [3, 3, 3])
    assert np.all(np.isfinite(dist.log_prob(jnp.full(3, 2))))  # finite stand-in for log 0


def test_categorical_mode_skips_masked_argmax():
    dist = distributions.MaskedCategorical(jnp.array([0.0, 3.0, 1.0]), jnp.array([True, False, True]))
    assert int(dist.mode()) == 2


def test_categorical_neg_inf_logit_without_mask_counts_as_masked():
    dist = distributions.MaskedCategorical(jnp.array([0.0, -jnp.inf, jnp.log(3.0)]))
    np.testing.assert_allclose(dist.probs, [0.25, 0.0, 0.75], rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), stats.entropy([1.0, 3.0]), rtol=1e-6)


def test_categorical_masked_actions_never_sampled():
    # The masked action has by far the largest logit, so ignoring the mask would sample it ~97%.
    logits = jnp.array([0.0, jnp.log(2.0), 5.0, jnp.log(4.0)])
    dist = distributions.MaskedCategorical(logits, jnp.asarray(MASK))
    n = 10_000
    samples = np.asarray(jax.jit(jax.vmap(dist.sample))(jax.random.split(KEY, n)))
    counts = np.bincount(samples, minlength=4)
    assert counts[2] == 0
    assert samples.dtype == np.int32
    standard_error = np.sqrt(P_VALID * (1 - P_VALID) / n)
    np.testing.assert_array_less(np.abs(counts / n - P_VALID), 4 * standard_error + 1e-12)


def test_categorical_all_masked_row_falls_back_to_uniform():
    dist = distributions.MaskedCategorical(jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
                                           jnp.array([[False, False, False], [True, False, True]]))
    np.testing.assert_allclose(dist.probs[0], np.full(3, 1 / 3), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy()[0], np.log(3.0), rtol=1e-6)
    assert np.all(np.isfinite(dist.log_prob(jnp.array([1, 1]))))


def test_categorical_kl_matches_scipy_and_masks():
    p_logits, q_logits = jnp.log(jnp.array([1.0, 2.0, 9.0, 4.0])), jnp.log(jnp.array([3.0, 1.0, 1.0, 1.0]))
    mask = jnp.asarray(MASK)
    p = distributions.MaskedCategorical(p_logits, mask)
    q = distributions.MaskedCategorical(q_logits, mask)
    np.testing.assert_allclose(p.kl(q), stats.entropy([1, 2, 4], [3, 1, 1]), rtol=1e-5)
    np.testing.assert_allclose(p.kl(p), 0.0, atol=1e-6)
    # q masks an action p can take: the true KL is +inf, ours is finite and huge.
    q_narrow = distributions.MaskedCategorical(q_logits, jnp.array([True, True, False, False]))
    kl = float(p.kl(q_narrow))
    assert np.isfinite(kl) and kl > 1e8


def test_categorical_gradients_finite_and_zero_on_masked_entries():
    mask = jnp.asarray(MASK)

    def loss(logits):
        dist = distributions.MaskedCategorical(logits, mask)
        return dist.log_prob(jnp.int32(1)) + dist.entropy() + dist.kl(distributions.MaskedCategorical(jnp.zeros(4), mask))

    grads = jax.grad(loss)(jnp.array([0.3, -0.2, -jnp.inf, 1.0]))
    assert np.all(np.isfinite(grads))
    assert grads[2] == 0.0
    assert np.all(np.abs(np.asarray(grads)[MASK]) > 1e-3)
    # d log π(1) / dℓ = e_1 − π on the valid actions (entropy and KL grads sum to zero as well).
    grads_lp = jax.grad(lambda l: distributions.MaskedCategorical(l, mask).log_prob(jnp.int32(1)))(jnp.log(jnp.asarray(WEIGHTS)))
    np.testing.assert_allclose(grads_lp, np.array([0.0, 1.0, 0.0, 0.0]) - P_VALID, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Gaussian
# ----------------------------------------------------------------------------------------------

MEAN, LOG_STD = np.array([0.5, -1.0]), np.array([0.0, np.log(2.0)])


def test_gaussian_log_prob_entropy_kl_match_scipy():
    dist = distributions.Gaussian(jnp.asarray(MEAN, jnp.float32), jnp.asarray(LOG_STD, jnp.float32))
    a = np.array([1.0, 0.0])
    std = np.exp(LOG_STD)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(a, jnp.float32)), stats.norm.logpdf(a, MEAN, std).sum(), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), stats.norm.entropy(MEAN, std).sum(), rtol=1e-6)
    np.testing.assert_array_equal(dist.mode(), MEAN.astype(np.float32))
    other_mean, other_std = np.array([0.0, 1.0]), np.array([2.0, 0.5])
    other = distributions.Gaussian(jnp.asarray(other_mean, jnp.float32), jnp.log(jnp.asarray(other_std, jnp.float32)))
    kl = np.sum(np.log(other_std / std) + (std**2 + (MEAN - other_mean) ** 2) / (2 * other_std**2) - 0.5)
    np.testing.assert_allclose(dist.kl(other), kl, rtol=1e-5)


def test_gaussian_state_independent_log_std_broadcasts():
    dist = distributions.Gaussian(jnp.zeros((5, 2)), jnp.asarray(LOG_STD, jnp.float32))
    assert dist.sample(KEY).shape == (5, 2)
    assert dist.mode().shape == (5, 2)
    np.testing.assert_allclose(dist.entropy(), np.full(5, stats.norm.entropy(0, np.exp(LOG_STD)).sum()), rtol=1e-6)


def test_gaussian_sample_moments():
    n = 20_000
    dist = distributions.Gaussian(jnp.broadcast_to(jnp.asarray(MEAN, jnp.float32), (n, 2)), jnp.asarray(LOG_STD, jnp.float32))
    samples = np.asarray(dist.sample(KEY))
    std = np.exp(LOG_STD)
    np.testing.assert_array_less(np.abs(samples.mean(0) - MEAN), 4 * std / np.sqrt(n))
    np.testing.assert_allclose(samples.std(0), std, rtol=0.03)


def test_gaussian_sample_is_pathwise_differentiable():
    def sample(mean, log_std):
        return distributions.Gaussian(mean, log_std).sample(KEY)

    mean, log_std = jnp.asarray(MEAN, jnp.float32), jnp.asarray(LOG_STD, jnp.float32)
    a = sample(mean, log_std)
    d_mean, d_log_std = jax.jacobian(sample, argnums=(0, 1))(mean, log_std)
    np.testing.assert_allclose(d_mean, np.eye(2), atol=1e-6)  # a = μ + σε
    np.testing.assert_allclose(d_log_std, np.diag(a - mean), rtol=1e-5)  # ∂a/∂log σ = σε


# ----------------------------------------------------------------------------------------------
# TanhGaussian
# ----------------------------------------------------------------------------------------------

LOW, HIGH = -2.0, 3.0  # c = 0.5, h = 2.5


def _tanh_1d(mean, log_std, low=LOW, high=HIGH):
    f32 = lambda x: jnp.asarray([x], jnp.float32)
    return distributions.TanhGaussian(f32(mean), f32(log_std), f32(low), f32(high))


def _scipy_tanh_log_density(a, mean, log_std, low=LOW, high=HIGH):
    """float64 oracle: log N(atanh z; μ, σ) − log(h (1 − z²)), z = (a − c)/h."""
    c, h = (high + low) / 2, (high - low) / 2
    z = (np.asarray(a, np.float64) - c) / h
    return stats.norm.logpdf(np.arctanh(z), mean, np.exp(log_std)) - np.log(h * (1 - z**2))


def _tanh_cdf(a, mean, log_std, low=LOW, high=HIGH):
    c, h = (high + low) / 2, (high - low) / 2
    return special.ndtr((np.arctanh((a - c) / h) - mean) / np.exp(log_std))


def test_tanh_log_prob_matches_change_of_variables():
    mean, log_std = np.array([0.3, -1.2]), np.array([-0.5, 0.4])
    low, high = np.array([-1.0, 0.0]), np.array([1.0, 4.0])
    dist = distributions.TanhGaussian(*(jnp.asarray(x, jnp.float32) for x in (mean, log_std, low, high)))
    a = np.array([0.2, 3.5])
    expected = sum(_scipy_tanh_log_density(a[d], mean[d], log_std[d], low[d], high[d]) for d in range(2))
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(a, jnp.float32)), expected, rtol=1e-5)
    # mode = c + h tanh(μ), by hand.
    np.testing.assert_allclose(dist.mode(), [np.tanh(0.3), 2.0 + 2.0 * np.tanh(-1.2)], rtol=1e-6)


# σ small enough that float32 can resolve the mass: with P(|u| > 8.3) not negligible (e.g. σ = e²)
# that mass sits within one float32 ulp of the bounds and no float32 density can integrate to 1.
@pytest.mark.parametrize("mean,log_std", [(0.4, -0.3), (-1.5, 0.3), (0.8, 0.5)])
def test_tanh_density_integrates_to_one_and_to_the_cdf(mean, log_std):
    log_prob = jax.jit(_tanh_1d(mean, log_std).log_prob)
    density = lambda a: float(jnp.exp(log_prob(jnp.array([a], jnp.float32))))
    total, _ = integrate.quad(density, LOW, HIGH, limit=400, epsabs=1e-5)
    np.testing.assert_allclose(total, 1.0, atol=2e-4)
    part, _ = integrate.quad(density, -1.0, 1.7, limit=200)
    np.testing.assert_allclose(part, _tanh_cdf(1.7, mean, log_std) - _tanh_cdf(-1.0, mean, log_std), atol=2e-4)


def test_tanh_samples_follow_the_squashed_law():
    """Histogram of 100k samples against bin probabilities from the closed-form CDF."""
    mean, log_std, n = 0.4, 0.2, 100_000
    dist = distributions.TanhGaussian(jnp.full((n, 1), mean, jnp.float32), jnp.float32(log_std), jnp.float32(LOW), jnp.float32(HIGH))
    samples = np.asarray(dist.sample(KEY))[:, 0]
    edges = np.linspace(LOW, HIGH, 26)
    freq = np.histogram(samples, edges)[0] / n
    prob = np.diff(_tanh_cdf(np.clip(edges, LOW + 1e-12, HIGH - 1e-12), mean, log_std))
    np.testing.assert_array_less(np.abs(freq - prob), 4 * np.sqrt(prob * (1 - prob) / n) + 1e-4)
    # mode() is the median of each dimension.
    np.testing.assert_allclose(np.mean(samples <= float(dist.mode()[0, 0])), 0.5, atol=0.01)


@jax.jit
def _saturating_tanh_checks(mean):
    # In float32 c − h = −0.100000024 < −0.1 here: saturated samples must still be clipped onto low.
    low, high = jnp.array([-0.1, -0.3]), jnp.array([0.7, 0.9])
    dist = distributions.TanhGaussian(jnp.full((2000, 2), mean), jnp.full((2000, 2), 2.0), low, high)
    samples, lp = dist.sample_and_log_prob(KEY)
    on_bound = dist.log_prob(jnp.broadcast_to(high, (2000, 2)))
    grads = jax.grad(lambda m: jnp.sum(dist.replace(mean=m).log_prob(samples)))(dist.mean)
    return low, high, samples, lp, dist.log_prob(samples), on_bound, grads


@pytest.mark.parametrize("mean", [-20.0, -3.0, 3.0, 20.0])
def test_tanh_samples_stay_in_bounds_with_finite_log_probs(mean):
    low, high, samples, lp, log_prob, on_bound, grads = map(np.asarray, _saturating_tanh_checks(jnp.float32(mean)))
    assert np.all(samples >= low) and np.all(samples <= high)
    assert np.mean((samples == low) | (samples == high)) > 0.1  # float32-saturated samples are covered
    for x in (lp, log_prob, on_bound, grads):
        assert np.all(np.isfinite(x))


def test_tanh_sample_and_log_prob_agrees_with_log_prob_away_from_bounds():
    @jax.jit
    def run(key):
        dist = distributions.TanhGaussian(jnp.array([[0.3, -0.5]] * 500), jnp.array([-0.5, 0.0]), jnp.array([-1.0, 0.0]), jnp.array([1.0, 5.0]))
        samples, lp = dist.sample_and_log_prob(key)
        return samples, lp, dist.sample(key), dist.log_prob(samples)

    samples, lp, same_key_samples, log_prob = run(KEY)
    np.testing.assert_allclose(samples, same_key_samples, rtol=1e-6)
    np.testing.assert_allclose(log_prob, lp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mean,log_std,atol", [(0.0, 0.0, 1e-5), (1.5, -1.0, 1e-5), (0.0, -5.0, 1e-5), (-0.5, 1.0, 2e-4), (-3.0, 2.0, 0.03)])
def test_tanh_entropy_matches_numerical_integration(mean, log_std, atol):
    """Against −∫ p log p: over the action (via z = (a − c)/h) where float64 resolves the mass near
    the bounds, and over u (H[a] = H[u] + E log|da/du|) for every case."""
    c, h, std = (HIGH + LOW) / 2, (HIGH - LOW) / 2, np.exp(log_std)
    actual = float(_tanh_1d(mean, log_std).entropy())

    def log_det(u):  # log(h (1 − tanh² u)) = log h + 2 (log 2 − |u| − log(1 + e^{−2|u|})), float64
        return np.log(h) + 2 * (np.log(2) - abs(u) - np.log1p(np.exp(-2 * abs(u))))

    expected_log_det, _ = integrate.quad(lambda u: log_det(u) * stats.norm.pdf(u, mean, std), mean - 12 * std,
                                         mean + 12 * std, points=[0.0], limit=500, epsabs=1e-10)
    np.testing.assert_allclose(actual, stats.norm.entropy(mean, std) + expected_log_det, atol=atol)
    if log_std <= 1.0:
        def minus_p_log_p(z):  # da = h dz
            log_p = _scipy_tanh_log_density(c + h * z, mean, log_std)
            return -np.exp(log_p) * log_p * h

        expected, _ = integrate.quad(minus_p_log_p, -1.0, 1.0, points=[np.tanh(mean)], limit=500, epsabs=1e-10)
        np.testing.assert_allclose(actual, expected, atol=atol)


def test_tanh_entropy_falls_when_sigma_saturates_the_bounds():
    """Unlike the pre-squash entropy, the true entropy is at most log(high − low) and drops once σ
    pushes mass onto the bounds."""
    entropies = {s: float(_tanh_1d(0.0, s).entropy()) for s in (0.0, 2.0)}
    assert entropies[2.0] < entropies[0.0] < np.log(HIGH - LOW)
    assert float(_tanh_1d(0.0, 2.0).pre_squash.entropy()) > np.log(HIGH - LOW)


def test_tanh_entropy_and_kl_match_monte_carlo_in_2d():
    n = 50_000

    @jax.jit
    def run(key):
        p = distributions.TanhGaussian(jnp.array([0.3, -1.0]), jnp.array([-0.3, 0.5]), jnp.array([-1.0, 0.0]), jnp.array([1.0, 2.0]))
        q = p.replace(mean=p.mean + 0.5, log_std=jnp.array([0.0, 0.2]))
        samples, lp = jax.vmap(p.sample_and_log_prob)(jax.random.split(key, n))
        return p.entropy(), p.kl(q), lp, lp - jax.vmap(q.log_prob)(samples)

    entropy, kl, lp, kl_terms = map(np.asarray, run(KEY))
    np.testing.assert_allclose(entropy, -lp.mean(), atol=4 * lp.std() / np.sqrt(n))
    np.testing.assert_allclose(kl, kl_terms.mean(), atol=4 * kl_terms.std() / np.sqrt(n) + 1e-3)


# ----------------------------------------------------------------------------------------------
# Action spaces and conformance over all three distributions
# ----------------------------------------------------------------------------------------------

SPACES = {
    "discrete": (base.Discrete(4), {}),
    "tanh_gaussian": (base.Box(jnp.array([-1.0, 0.0]), jnp.array([1.0, 2.0]), (2,)), {}),
    "gaussian": (base.Box(-jnp.inf, jnp.inf, (2,)), {"squash": False}),
}


def _spec(name):
    space, kwargs = SPACES[name]
    return distributions.DistributionSpec.from_space(space, **kwargs)


def _heads(spec, shape, seed=1):
    """Head outputs inside the log-std clip range (outside it the gradient is 0 by design)."""
    return jnp.asarray(np.random.default_rng(seed).uniform(-1.5, 1.5, shape + (spec.num_outputs,)), jnp.float32)


def _mask(spec, shape):
    if spec.kind != distributions.CATEGORICAL:
        return None
    return jnp.broadcast_to(jnp.array([True, False, True, True]), shape + (4,))


def _all_outputs(spec, heads, mask, key):
    """Every method's output as one tuple (so jit/vmap/loop can be compared at once)."""
    dist = spec.make(heads, mask)
    sample_key, pair_key = jax.random.split(key)
    actions = dist.sample(sample_key)
    pair = dist.sample_and_log_prob(pair_key)
    return actions, dist.log_prob(actions), pair[0], pair[1], dist.entropy(), dist.mode(), dist.kl(spec.make(heads * 0.5, mask))


def test_spec_head_widths_and_kinds():
    discrete, squashed, gaussian = (_spec(name) for name in ("discrete", "tanh_gaussian", "gaussian"))
    assert (discrete.kind, discrete.num_outputs, discrete.action_shape) == ("categorical", 4, ())
    assert (squashed.kind, squashed.num_outputs, squashed.action_shape) == ("tanh_gaussian", 4, (2,))
    assert (squashed.low, squashed.high) == ((-1.0, 0.0), (1.0, 2.0))
    assert (gaussian.kind, gaussian.num_outputs) == ("gaussian", 4)
    assert isinstance(distributions.for_action_space(base.Discrete(3), jnp.zeros(3)), distributions.MaskedCategorical)
    hash(squashed)  # static: can sit on a network or rule object


def test_spec_clips_log_std_and_splits_mean():
    spec = distributions.DistributionSpec.from_space(base.Box(-1.0, 1.0, (3,)))
    dist = spec.make(jnp.array([0.1, 0.2, 0.3, 10.0, -10.0, 0.7]))
    assert isinstance(dist, distributions.TanhGaussian)
    bound = distributions.TANH_MEAN_BOUND
    np.testing.assert_allclose(dist.mean, bound * np.tanh(np.array([0.1, 0.2, 0.3]) / bound), rtol=1e-6)
    np.testing.assert_allclose(dist.log_std, [2.0, -5.0, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(dist.low, [-1.0] * 3)


@pytest.mark.parametrize("raw_mean", [0.0, 4.0, 20.0, -1e3])
def test_spec_policy_log_probs_of_its_own_stored_actions_match_sampling(raw_mean):
    """A head pushing its mean far past tanh's float32 range with σ at its floor (what a collapsing
    PPO policy does): the log-prob re-evaluated from the stored action (`log_prob(a)`, as every
    rule does) stays within 1 nat of the one at sampling time. Unbounded, u = 20 would be stored
    as a = ±1, re-inverted to u' = 8.3 and scored ~(11.7 / e^-5)²/2 ≈ 1e6 nats lower."""
    spec = distributions.DistributionSpec.from_space(base.Box(-3.0, 3.0, (1,)))
    head = jnp.broadcast_to(jnp.array([raw_mean, -10.0], jnp.float32), (4096, 2))
    dist = spec.make(head)
    actions, sampled_log_prob = dist.sample_and_log_prob(jax.random.key(0))
    stored_log_prob = dist.log_prob(actions)
    assert np.all(np.isfinite(stored_log_prob))
    np.testing.assert_array_less(np.abs(stored_log_prob - sampled_log_prob), 1.0)


def test_spec_rejects_bad_inputs():
    with pytest.raises(ValueError, match="finite"):
        distributions.DistributionSpec.from_space(base.Box(-jnp.inf, jnp.inf, (2,)))
    with pytest.raises(ValueError, match="rank-1"):
        distributions.DistributionSpec.from_space(base.Box(-1.0, 1.0, (2, 2)))
    with pytest.raises(ValueError, match="masks"):
        _spec("tanh_gaussian").make(jnp.zeros(4), jnp.ones(2, bool))
    with pytest.raises(AssertionError):
        _spec("discrete").make(jnp.zeros(5))
    with pytest.raises(TypeError):
        distributions.DistributionSpec.from_space(object())


def _assert_close(actual, expected, what):
    # rtol 1e-4: samples may differ by an ulp between programs (XLA fuses tanh differently) and
    # log π near the bounds amplifies that by 1/(1 − z²).
    for x, y in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5, err_msg=what)


@pytest.mark.parametrize("name", list(SPACES))
def test_conformance_jit_eager_vmap_loop_and_leading_dims(name):
    """Over a [T, B] = [2, 2] batch: per element, eager == jit == jit(vmap(vmap)); and one
    distribution with batch dims [T, B] (built and consumed across jit boundaries) gives the
    per-element log-probs, entropies, modes and KLs."""
    spec = _spec(name)
    heads, mask = _heads(spec, (2, 2)), _mask(spec, (2, 2))
    keys = jax.random.split(KEY, 4).reshape(2, 2)
    vmapped = jax.jit(jax.vmap(jax.vmap(lambda h, m, k: _all_outputs(spec, h, m, k))))(heads, mask, keys)
    jitted_single = jax.jit(_all_outputs, static_argnums=0)
    for t in range(2):
        for b in range(2):
            args = (spec, heads[t, b], None if mask is None else mask[t, b], keys[t, b])
            eager, jitted = _all_outputs(*args), jitted_single(*args)
            _assert_close(jitted, eager, f"jit != eager at {t, b}")
            _assert_close(jax.tree.map(lambda x: x[t, b], vmapped), eager, f"vmap != loop at {t, b}")

    dist = jax.jit(spec.make)(heads, mask)  # a pytree: crosses jit boundaries both ways
    actions = vmapped[0]
    assert actions.shape == (2, 2) + spec.action_shape
    deterministic = jax.jit(lambda d, a: (d.log_prob(a), d.entropy(), d.mode(), d.kl(spec.make(heads * 0.5, mask))))(dist, actions)
    assert deterministic[0].shape == deterministic[1].shape == (2, 2)
    _assert_close(deterministic, (vmapped[1], vmapped[4], vmapped[5], vmapped[6]), "[T, B] batch != per element")


@pytest.mark.parametrize("name", list(SPACES))
def test_gradients_finite_and_nonzero(name):
    spec = _spec(name)
    heads, mask = _heads(spec, (3, 2)), _mask(spec, (3, 2))
    actions = spec.make(heads, mask).sample(jax.random.key(7))

    def loss(h):
        dist = spec.make(h, mask)
        _, lp = dist.sample_and_log_prob(KEY)
        return jnp.sum(dist.log_prob(actions) + dist.entropy() + lp)

    grads = np.asarray(jax.jit(jax.grad(loss))(heads))
    assert np.all(np.isfinite(grads))
    live = np.ones_like(grads, bool) if mask is None else np.asarray(mask)
    assert np.all(np.abs(grads[live]) > 0)
    if mask is not None:
        assert np.all(grads[~live] == 0)  # nothing leaks into masked logits


def test_premasked_categorical_matches_the_general_path():
    """Agent heads (already masked with MASKED_LOGIT) skip re-masking: same results."""
    logits = jnp.array([[0.3, distributions.MASKED_LOGIT, -1.2, 2.0], [1.0, 1.0, distributions.MASKED_LOGIT, 0.0]])
    general = distributions.MaskedCategorical(logits)
    fast = distributions.MaskedCategorical(logits, premasked=True)
    actions = jnp.array([3, 1])
    np.testing.assert_allclose(fast.log_prob(actions), general.log_prob(actions), rtol=1e-6)
    np.testing.assert_allclose(fast.entropy(), general.entropy(), rtol=1e-6)
    np.testing.assert_array_equal(fast.probs, general.probs)
    np.testing.assert_array_equal(fast.mode(), general.mode())
    samples = distributions.MaskedCategorical(jnp.tile(logits[1], (500, 1)), premasked=True).sample(
        jax.random.key(1))
    assert set(np.unique(samples).tolist()) == {0, 1, 3}
