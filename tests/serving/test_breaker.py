"""The circuit breaker, on a clock the test moves."""

import pytest

from serving.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_in_a_row_open_it_and_a_success_between_resets_the_count():
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=Clock())
    breaker.failure(), breaker.failure(), breaker.success(), breaker.failure(), breaker.failure()
    assert (breaker.state, breaker.failures, breaker.allow()) == ("closed", 2, True)
    breaker.failure()
    assert (breaker.state, breaker.allow(), breaker.transitions) == ("open", False, [("closed", "open")])


def test_half_open_lets_one_probe_through_and_its_success_closes_it():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock)
    breaker.failure()
    clock.now += 9.99
    assert (breaker.state, breaker.allow()) == ("open", False)
    clock.now += 0.01
    assert breaker.state == "half_open"
    assert [breaker.allow(), breaker.allow()] == [True, False]  # the probe, then a call during the probe
    breaker.success()
    assert (breaker.state, breaker.allow(), breaker.transitions) == (
        "closed", True, [("closed", "open"), ("half_open", "closed")])


def test_a_failed_probe_opens_it_for_another_period():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=5, clock=clock)
    breaker.failure(), breaker.failure()
    clock.now += 5
    assert breaker.allow() is True
    breaker.failure()
    assert (breaker.state, breaker.opened_at, breaker.allow()) == ("open", 105.0, False)
    clock.now += 5
    assert (breaker.state, breaker.allow()) == ("half_open", True)
    assert breaker.transitions == [("closed", "open"), ("half_open", "open")]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="failure_threshold >= 1"):
        CircuitBreaker(failure_threshold=0)
