"""Off-policy estimates on hand-computed logs, and on a simulated log against the candidate's true value."""

import numpy as np
import pytest

from readout.ope import doubly_robust, ips


def test_ips_and_doubly_robust_by_hand():
    actions = np.array([0, 1, 1])
    rewards = np.array([2.0, 0.0, 4.0])
    logged = np.array([0.5, 0.5, 0.25])
    target = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    q = np.array([[1.0, 3.0], [1.0, 3.0], [2.0, 2.0]])
    # weights 2, 1, 4: IPS = (4 + 0 + 16) / 3
    estimate = ips(actions, rewards, logged, target)
    assert estimate.value == pytest.approx(20 / 3)
    assert estimate.n == 3
    assert estimate.effective_n == pytest.approx(49 / 21)
    # DR per decision: 1 + 2 (2 - 1) = 3; 2 + 1 (0 - 3) = -1; 2 + 4 (4 - 2) = 10
    dr = doubly_robust(actions, rewards, logged, target, q)
    assert dr.value == pytest.approx(4.0)
    assert dr.stderr == pytest.approx(np.std([3, -1, 10], ddof=1) / np.sqrt(3))
    assert dr.as_metrics("dr") == {"dr_value": dr.value, "dr_stderr": dr.stderr, "dr_n": 3.0,
                                   "dr_effective_n": dr.effective_n}


def test_both_estimate_a_candidates_true_value_from_another_policys_log():
    rng = np.random.default_rng(0)
    n, means = 40_000, np.array([1.0, 2.0, 3.0])
    logging_policy = np.array([0.6, 0.3, 0.1])
    candidate = np.array([0.1, 0.2, 0.7])
    actions = rng.choice(3, n, p=logging_policy)
    rewards = rng.poisson(means[actions]).astype(float)
    target = np.tile(candidate, (n, 1))
    truth = float(candidate @ means)
    assert ips(actions, rewards, logging_policy[actions], target).value == pytest.approx(truth, rel=0.03)
    biased_model = np.tile(means * 1.2, (n, 1))  # DR corrects a wrong reward model
    assert doubly_robust(actions, rewards, logging_policy[actions], target, biased_model).value == \
        pytest.approx(truth, rel=0.03)


@pytest.mark.parametrize(("logged", "target", "message"), [
    ([0.0], [[1.0, 0.0]], r"logged propensities must be in \(0, 1\]"),
    ([0.5], [[0.7, 0.7]], "each target row must be probabilities summing to one"),
    ([0.5, 0.5], [[1.0, 0.0]], "need one reward, propensity and target row per decision"),
])
def test_bad_logs_are_refused(logged, target, message):
    with pytest.raises(ValueError, match=message):
        ips([0], [1.0], logged, target)


def test_an_empty_log_is_refused():
    with pytest.raises(ValueError, match="no logged decisions"):
        ips([], [], [], np.zeros((0, 2)))
