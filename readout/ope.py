"""Off-policy evaluation: what a candidate pricing policy would earn, estimated from the decision log of the
policies that did take the traffic, before the candidate takes any.

Each logged decision i has the arm shown `a_i`, the probability the logging policy had of showing it
(`logged_propensity`, the decision log's `propensity`), its reward `r_i` (e.g. profit per view), and the
candidate's probabilities of every arm, `target[i, :]`. With a reward model `q[i, a]` (e.g. the demand
model's expected profit of each arm):

    IPS  = mean_i  w_i r_i,                                  w_i = target[i, a_i] / logged_propensity_i
    DR   = mean_i  sum_a target[i, a] q[i, a]  +  w_i (r_i - q[i, a_i])

Both are unbiased when every arm the candidate may choose had a positive logged propensity; DR has lower
variance when the reward model is good. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A policy value per decision, its standard error, the decisions used and the effective sample size of
    the importance weights, (sum w)^2 / sum w^2: small when the candidate strays from what was logged."""

    value: float
    stderr: float
    n: int
    effective_n: float

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_value": self.value, f"{prefix}_stderr": self.stderr, f"{prefix}_n": float(self.n),
                f"{prefix}_effective_n": self.effective_n}


def _checked(actions, rewards, logged_propensity, target) -> tuple[np.ndarray, ...]:
    actions = np.asarray(actions, dtype=np.int64)
    rewards, logged = np.asarray(rewards, dtype=float), np.asarray(logged_propensity, dtype=float)
    target = np.asarray(target, dtype=float)
    n = len(actions)
    if n == 0:
        raise ValueError("no logged decisions to evaluate on")
    if rewards.shape != (n,) or logged.shape != (n,) or target.ndim != 2 or target.shape[0] != n:
        raise ValueError(f"need one reward, propensity and target row per decision ({n}); got {rewards.shape}, "
                         f"{logged.shape}, {target.shape}")
    if not np.all((logged > 0) & (logged <= 1)):
        raise ValueError("logged propensities must be in (0, 1]: a decision of propensity 0 cannot have been made")
    if np.any((actions < 0) | (actions >= target.shape[1])):
        raise ValueError(f"actions must index the target's {target.shape[1]} arms")
    if not np.allclose(target.sum(axis=1), 1.0) or np.any(target < 0):
        raise ValueError("each target row must be probabilities summing to one")
    return actions, rewards, logged, target


def _estimate(per_decision: np.ndarray, weights: np.ndarray) -> Estimate:
    n = len(per_decision)
    stderr = float(np.std(per_decision, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    effective = float(weights.sum() ** 2 / np.sum(weights**2)) if np.any(weights > 0) else 0.0
    return Estimate(float(np.mean(per_decision)), stderr, n, effective)


def ips(actions, rewards, logged_propensity, target) -> Estimate:
    """Inverse-propensity estimate of the candidate's mean reward per decision."""
    actions, rewards, logged, target = _checked(actions, rewards, logged_propensity, target)
    weights = target[np.arange(len(actions)), actions] / logged
    return _estimate(weights * rewards, weights)


def doubly_robust(actions, rewards, logged_propensity, target, reward_model) -> Estimate:
    """Doubly robust estimate of the candidate's mean reward per decision; `reward_model` is [decisions, arms]."""
    actions, rewards, logged, target = _checked(actions, rewards, logged_propensity, target)
    q = np.asarray(reward_model, dtype=float)
    if q.shape != target.shape:
        raise ValueError(f"reward_model must be [decisions, arms] like target {target.shape}, got {q.shape}")
    rows = np.arange(len(actions))
    weights = target[rows, actions] / logged
    per_decision = np.sum(target * q, axis=1) + weights * (rewards - q[rows, actions])
    return _estimate(per_decision, weights)


def on_policy(rewards) -> Estimate:
    """The logging policy's own value per decision: the mean reward (every weight one)."""
    rewards = np.asarray(rewards, dtype=float)
    if rewards.size == 0:
        raise ValueError("no logged decisions to evaluate on")
    return _estimate(rewards, np.ones_like(rewards))


def promotable(candidate: Estimate, incumbent: Estimate, min_lift: float = 0.0, z: float = 1.645) -> bool:
    """The gate before a candidate pricing policy takes traffic: its estimated value, less `z` standard errors
    of the difference, beats the incumbent's by at least `min_lift` (relative)."""
    margin = z * float(np.hypot(candidate.stderr, incumbent.stderr))
    return candidate.value - margin >= incumbent.value * (1 + min_lift)


# Logged prices are compared with a candidate's to the cent.
PRICE_TOLERANCE = 0.005


@dataclass(frozen=True)
class PriceEstimates:
    """A deterministic candidate pricing policy evaluated on a decision log: its IPS and DR values per
    decision, and the logging policies' own value (`logged`) on the same decisions."""

    ips: Estimate
    dr: Estimate
    logged: Estimate

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {**self.ips.as_metrics(f"{prefix}_ips"), **self.dr.as_metrics(f"{prefix}_dr")}


def evaluate_prices(logged_price, candidate_price, logged_propensity, reward, q_logged, q_candidate
                    ) -> PriceEstimates:
    """A candidate that names one price per decision, evaluated on logged decisions (one element each).

    Each decision has two arms: the price logged (arm 0, the action taken) and the candidate's (arm 1);
    the candidate takes arm 0 when it names the logged price (to the cent), so it is weighted only where
    it agrees with the log. `q_logged` and `q_candidate` are a reward model's expected reward (e.g. the
    demand model's profit per view) at the logged and candidate prices."""
    logged_price, candidate_price = np.asarray(logged_price, dtype=float), np.asarray(candidate_price, dtype=float)
    if logged_price.shape != candidate_price.shape:
        raise ValueError(f"need one candidate price per logged price, got {candidate_price.shape} for "
                         f"{logged_price.shape}")
    same = np.abs(logged_price - candidate_price) <= PRICE_TOLERANCE
    target = np.column_stack([same, ~same]).astype(float)
    actions = np.zeros(len(logged_price), dtype=np.int64)
    q = np.column_stack([np.asarray(q_logged, dtype=float), np.asarray(q_candidate, dtype=float)])
    return PriceEstimates(ips(actions, reward, logged_propensity, target),
                          doubly_robust(actions, reward, logged_propensity, target, q), on_policy(reward))
