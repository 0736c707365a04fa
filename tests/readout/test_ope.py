"""Off-policy estimates on hand-computed logs, and on a simulated log against the candidate's true value."""

import numpy as np
import pytest

from readout.ope import Estimate, doubly_robust, evaluate_prices, ips, on_policy, promotable


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


def test_the_promotion_gate_needs_the_lift_beyond_the_noise():
    incumbent = on_policy([10.0, 12.0, 11.0, 9.0])  # mean 10.5, stderr sqrt(5/3) / 2
    assert incumbent.value == 10.5 and incumbent.stderr == pytest.approx(np.sqrt(5 / 3) / 2)
    clear, noisy = Estimate(14.0, 0.5, 100, 50.0), Estimate(11.0, 2.0, 100, 5.0)
    assert promotable(clear, incumbent)  # 14 - 1.645 x hypot(0.5, 0.645) = 12.66 >= 10.5
    assert not promotable(noisy, incumbent)
    assert not promotable(clear, incumbent, min_lift=0.25)  # needs 13.125
    with pytest.raises(ValueError, match="no logged decisions"):
        on_policy([])


def test_a_candidate_price_is_weighted_only_where_it_agrees_with_the_log():
    # Decision 2's candidate names another price (weight 0); decision 3's agrees to the cent (weight 1 / 0.25).
    estimates = evaluate_prices(logged_price=[10.0, 12.0, 8.0], candidate_price=[10.0, 11.0, 8.004],
                                logged_propensity=[1.0, 0.5, 0.25], reward=[3.0, 5.0, 2.0],
                                q_logged=[2.0, 4.0, 1.0], q_candidate=[2.5, 6.0, 1.5])
    # IPS per decision: 1 x 3, 0, 4 x 2. DR: 2 + 1 (3 - 2) = 3; 6 + 0 = 6; 1 + 4 (2 - 1) = 5.
    assert estimates.as_metrics("challenger") == pytest.approx({
        "challenger_ips_value": 11 / 3, "challenger_ips_stderr": np.std([3, 0, 8], ddof=1) / np.sqrt(3),
        "challenger_ips_n": 3.0, "challenger_ips_effective_n": 25 / 17,
        "challenger_dr_value": 14 / 3, "challenger_dr_stderr": np.std([3, 6, 5], ddof=1) / np.sqrt(3),
        "challenger_dr_n": 3.0, "challenger_dr_effective_n": 25 / 17})
    assert estimates.logged.as_metrics("logged") == pytest.approx({
        "logged_value": 10 / 3, "logged_stderr": np.std([3, 5, 2], ddof=1) / np.sqrt(3), "logged_n": 3.0,
        "logged_effective_n": 3.0})


def test_candidate_prices_must_match_the_log_one_for_one():
    with pytest.raises(ValueError, match="need one candidate price per logged price"):
        evaluate_prices([10.0, 12.0], [10.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0])
