"""The pricing simulation harness: pricing policies run day after day against the simulator's true demand,
in process (no HTTP, no Kafka), and their cumulative regret is measured against the oracle.

A `Shelf` is the SKUs priced, with their fixed inputs on the world's live day (unit cost, competitor
minimum, MAP, starting price), the bandit grid (`pricing.bandit.price_grid`) and the demand model's
add-to-cart rate at each grid price (the prior). A `HarnessMarket` says how long it runs, how many pricing
periods a day has, how the categories' elasticities drift over the horizon and the seed.

Each period every policy prices every SKU inside the guardrails, the daily change limit taken around the
policy's own price at the start of the day. Shoppers then view each SKU (Poisson, the same draw for every
policy) and add to cart at the true rate at the policy's price (binomial); the policy learns from those
outcomes. Profit is the true *expected* profit of the price (units per cart and costs known), so regret
measures the decisions, not the shoppers' luck. The oracle knows the true rates and takes the open grid
price of greatest expected profit each period: by definition its regret is zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from lakehouse.reference import CATEGORIES
from pricing.bandit import (
    DEFAULT_BANDIT,
    NO_ARM,
    TOLERANCE,
    BanditConfig,
    BanditState,
    Choice,
    bayes_ucb,
    epsilon_greedy,
    greedy,
    margins,
    open_arms,
    price_grid,
    thompson,
)
from pricing.guardrails import DEFAULT_GUARDRAILS, Guardrails, Market, apply_guardrails, market_interval
from pricing.rules import rule_based
from readout.ope import Estimate, doubly_robust, ips, on_policy
from simulator.config import rng_for
from simulator.shocks import live_day
from simulator.world import World

# A prior: grid prices [skus, arms] (no NaN) -> the demand model's add-to-carts per view at each.
PriorFn = Callable[[np.ndarray], np.ndarray]
FRAME_COLUMNS = ("market", "seed", "policy", "day", "profit", "oracle_profit", "regret", "violations", "decisions")


@dataclass(frozen=True)
class HarnessMarket:
    """How a harness run goes: `days` of `periods_per_day` pricing periods; each category's elasticity moves
    linearly to (1 + u) times its start over the horizon, u drawn uniformly in +-`elasticity_drift`."""

    name: str
    days: int = 60
    periods_per_day: int = 4
    elasticity_drift: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.days < 1 or self.periods_per_day < 1:
            raise ValueError(f"days and periods_per_day must be >= 1, got {self.days}, {self.periods_per_day}")
        if not 0 <= self.elasticity_drift < 1:
            raise ValueError(f"elasticity_drift must be in [0, 1), got {self.elasticity_drift}")


@dataclass(frozen=True, eq=False)
class Shelf:
    """The SKUs a harness prices (world row indexes) and their fixed inputs, one row per SKU."""

    world: World
    rows: np.ndarray
    unit_cost: np.ndarray
    competitor_price: np.ndarray
    map_price: np.ndarray
    start_price: np.ndarray
    grid: np.ndarray
    prior_rate: np.ndarray
    rails: Guardrails = DEFAULT_GUARDRAILS

    @classmethod
    def of(cls, world: World, skus, prior: PriorFn, rails: Guardrails = DEFAULT_GUARDRAILS) -> Shelf:
        """The shelf of `skus` (canonical ids) on the world's live day; the grid is anchored at each SKU's
        price that day and `prior` gives the model's rates on it."""
        day = live_day(world)
        rows = world.sku_index(np.asarray(skus).astype(str))
        d = world.state_day(day)
        cost, cmin = world.unit_cost_usd(day)[rows], world.competitor_min_usd(day)[rows]
        map_price, start = world.map_price[d, rows], world.own_price(day)[rows]
        grid = price_grid(start, cost, cmin, map_price, rails)
        filled = np.where(np.isfinite(grid), grid, start[:, None])  # the prior is asked about real prices only
        prior_rate = np.where(np.isfinite(grid), np.asarray(prior(filled), dtype=float), np.nan)
        return cls(world, rows, cost, cmin, map_price, start, grid, prior_rate, rails)

    @property
    def skus(self) -> np.ndarray:
        return self.world.sku_id[self.rows]

    @property
    def categories(self) -> np.ndarray:
        return np.asarray(CATEGORIES)[self.world.category[self.rows]]

    def elasticity(self, market: HarnessMarket, day: int) -> np.ndarray:
        """Per SKU, its true elasticity on harness day `day`."""
        drift = rng_for(market.seed, "harness_drift").uniform(-1, 1, len(CATEGORIES)) * market.elasticity_drift
        progress = day / max(market.days - 1, 1)
        e = self.world.elasticity[self.rows] * (1 + drift[self.world.category[self.rows]] * progress)
        return np.minimum(e, self.world.params.elasticity_max)  # stays elastic: a best price exists

    def cart_rate(self, prices: np.ndarray, elasticity: np.ndarray) -> np.ndarray:
        """True add-to-carts per view at `prices` ([skus] or [skus, arms])."""
        prices = np.asarray(prices, dtype=float)
        extra = (slice(None),) + (None,) * (prices.ndim - 1)
        return self.world.cart_probability(self.rows[extra], prices, self.competitor_price[extra], elasticity[extra])

    def interval(self, current_price: np.ndarray):
        return market_interval(Market.of(self.unit_cost, current_price, self.competitor_price, self.map_price),
                               self.rails)

    def fallback(self, current_price: np.ndarray) -> np.ndarray:
        """The price of a SKU without an open arm: its current price through the guardrails (a step towards
        the grid, within the daily change limit)."""
        return apply_guardrails(current_price, self.unit_cost, current_price, self.competitor_price, self.map_price,
                                self.rails).prices

    def open_arms(self, current_price: np.ndarray) -> np.ndarray:
        return open_arms(self.grid, self.unit_cost, current_price, self.competitor_price, self.map_price,
                         self.rails)


@dataclass(frozen=True, eq=False)
class Period:
    """What a policy may look at when it prices: the period, its price at the start of the day, the open
    arms around it; `true_rate` [skus, arms] is for the oracle only."""

    t: int
    day: int
    current_price: np.ndarray
    open_: np.ndarray
    true_rate: np.ndarray


class Policy(Protocol):
    name: str

    def choose(self, period: Period, rng: np.random.Generator) -> Choice: ...

    def learn(self, arms: np.ndarray, views: np.ndarray, carts: np.ndarray) -> None: ...

    def next_day(self) -> None: ...


class _Fixed:
    """A policy that never learns."""

    def learn(self, arms: np.ndarray, views: np.ndarray, carts: np.ndarray) -> None:
        pass

    def next_day(self) -> None:
        pass


@dataclass(eq=False)
class Oracle(_Fixed):
    shelf: Shelf
    name: str = "oracle"

    def choose(self, period: Period, rng: np.random.Generator) -> Choice:
        return greedy(self.shelf.grid, self.shelf.unit_cost, period.true_rate, period.open_)


@dataclass(eq=False)
class StaticOptimizer(_Fixed):
    """The batch path: the demand model's best open price, never updated from outcomes."""

    shelf: Shelf
    name: str = "static_optimizer"

    def choose(self, period: Period, rng: np.random.Generator) -> Choice:
        return greedy(self.shelf.grid, self.shelf.unit_cost, self.shelf.prior_rate, period.open_)


@dataclass(eq=False)
class RuleBased(_Fixed):
    """The control: `pricing.rules.rule_based` (prices off the grid; no arm, propensity one)."""

    shelf: Shelf
    name: str = "rule_based"

    def choose(self, period: Period, rng: np.random.Generator) -> Choice:
        s = self.shelf
        prices = rule_based(s.unit_cost, period.current_price, s.competitor_price, s.map_price, s.rails).prices
        return Choice(np.full(len(prices), NO_ARM), prices, np.zeros(s.grid.shape))


@dataclass(eq=False)
class _Learner:
    """A policy over a bandit posterior that learns from every outcome at a grid price."""

    shelf: Shelf
    config: BanditConfig = DEFAULT_BANDIT
    state: BanditState = field(init=False)

    def __post_init__(self) -> None:
        s = self.shelf
        self.state = BanditState.start(s.skus, s.categories, s.unit_cost, s.start_price, s.grid, s.prior_rate,
                                       self.config)

    def learn(self, arms: np.ndarray, views: np.ndarray, carts: np.ndarray) -> None:
        priced = arms != NO_ARM
        self.state.observe(np.flatnonzero(priced), arms[priced], views[priced], carts[priced])

    def next_day(self) -> None:
        self.state.forget()


@dataclass(eq=False)
class Bandit(_Learner):
    name: str = "bandit"

    def choose(self, period: Period, rng: np.random.Generator) -> Choice:
        return thompson(self.state, period.open_, rng)


@dataclass(eq=False)
class EpsilonGreedy(_Learner):
    epsilon: float = 0.1
    name: str = "epsilon_greedy"

    def choose(self, period: Period, rng: np.random.Generator) -> Choice:
        return epsilon_greedy(self.state.grid, self.state.unit_cost, self.state.posterior().rate(), period.open_,
                              self.epsilon, rng)


@dataclass(eq=False)
class UCB(_Learner):
    name: str = "ucb"

    def choose(self, period: Period, rng: np.random.Generator) -> Choice:
        return bayes_ucb(self.state, period.open_, period.t + 1)


def standard_policies(shelf: Shelf, config: BanditConfig = DEFAULT_BANDIT) -> list[Policy]:
    """The harness's policies: the oracle first (the reference), the bandit, the static optimizer, the
    baselines and the rule-based control, the learners on the same prior and posterior."""
    return [Oracle(shelf), Bandit(shelf, config), StaticOptimizer(shelf), EpsilonGreedy(shelf, config),
            UCB(shelf, config), RuleBased(shelf)]


def run(shelf: Shelf, market: HarnessMarket, policies: Sequence[Policy]) -> pd.DataFrame:
    """Run `policies` (the first is the reference of regret, normally the `Oracle`) over the market.

    Grain: one row per policy and day: the day's true expected profit of its prices, the reference's,
    regret (the difference), guardrail violations (prices outside the day's guardrails) and decisions.
    """
    if not policies:
        raise ValueError("no policy to run")
    world, n = shelf.world, len(shelf.rows)
    per_unit = world.purchase_given_cart * (1 + world.params.extra_quantity_mean)
    first_day = live_day(world)
    shoppers = rng_for(market.seed, "harness_shoppers")
    deciders = [rng_for(market.seed, "harness_policy", i) for i in range(len(policies))]
    current = [shelf.start_price.copy() for _ in policies]
    rows: list[tuple] = []
    t = 0
    for day in range(market.days):
        elasticity = shelf.elasticity(market, day)
        grid = np.where(np.isfinite(shelf.grid), shelf.grid, shelf.start_price[:, None])
        true_rate = np.where(np.isfinite(shelf.grid), shelf.cart_rate(grid, elasticity), np.nan)
        expected_views = world.expected_views(first_day + day)[shelf.rows] / market.periods_per_day
        profit, violations = np.zeros(len(policies)), np.zeros(len(policies), dtype=np.int64)
        opened = [shelf.open_arms(c) for c in current]
        intervals = [shelf.interval(c) for c in current]
        last = [c.copy() for c in current]
        for _ in range(market.periods_per_day):
            views = shoppers.poisson(expected_views).astype(float)
            draws = shoppers.random(n)  # common to all policies' add-to-cart outcomes
            for k, policy in enumerate(policies):
                choice = policy.choose(Period(t, day, current[k], opened[k], true_rate), deciders[k])
                price = np.where(choice.arms == NO_ARM, shelf.fallback(current[k]), choice.prices)
                rate = shelf.cart_rate(price, elasticity)
                profit[k] += float(np.sum((price - shelf.unit_cost) * expected_views * rate * per_unit))
                inside = (price >= intervals[k].low - TOLERANCE) & (price <= intervals[k].high + TOLERANCE)
                violations[k] += int(np.sum(~inside))
                carts = _carts(views, rate, draws)
                policy.learn(choice.arms, views, carts)
                last[k] = price
            t += 1
        for k, policy in enumerate(policies):
            rows.append((market.name, market.seed, policy.name, day, profit[k], profit[0], profit[0] - profit[k],
                         violations[k], n * market.periods_per_day))
            policy.next_day()
            current[k] = last[k]
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def _carts(views: np.ndarray, rate: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Add-to-carts of `views` at `rate`: Binomial(views, rate) by inversion of one uniform per SKU, so that
    policies pricing alike see alike outcomes (common random numbers)."""
    return np.maximum(stats.binom.ppf(uniform, views, np.clip(rate, 0, 1)), 0.0)


SUMMARY_COLUMNS = ("market", "seed", "policy", "regret", "regret_vs_reference", "regret_exponent",
                   "late_vs_early_regret", "last_profit_vs_oracle", "last_profit_vs_control", "violations")


def summarize(frame: pd.DataFrame, reference: str = "static_optimizer", control: str = "rule_based",
              last_days: int = 30) -> pd.DataFrame:
    """Grain: one row per market, seed and policy of a `run` frame: cumulative regret, its ratio to the
    `reference` policy's, its growth exponent b (cumulative regret ~ day^b over the days it is positive; below
    1: sublinear), the regret of the second half of the days over the first's, the last `last_days` days' true
    profit over the oracle's and over the `control` policy's, and guardrail violations."""
    out = []
    for (market, seed), run_ in frame.groupby(["market", "seed"], sort=False):
        days = run_["day"].max() + 1
        by_policy = {name: rows.sort_values("day") for name, rows in run_.groupby("policy", sort=False)}
        last = {name: rows.loc[rows["day"] >= days - last_days] for name, rows in by_policy.items()}
        for name, rows in by_policy.items():
            cumulative = rows["regret"].cumsum().to_numpy()
            day = rows["day"].to_numpy() + 1
            positive = cumulative > 0
            exponent = (float(np.polyfit(np.log(day[positive]), np.log(cumulative[positive]), 1)[0])
                        if positive.sum() >= 2 else float("nan"))
            half = rows["day"] < days / 2
            early, late = rows.loc[half, "regret"].sum(), rows.loc[~half, "regret"].sum()
            profit = last[name]["profit"].sum()
            reference_regret = by_policy[reference]["regret"].sum()
            out.append((market, seed, name, cumulative[-1], _ratio(cumulative[-1], reference_regret), exponent,
                        _ratio(late, early), _ratio(profit, last[name]["oracle_profit"].sum()),
                        _ratio(profit, last[control]["profit"].sum()), int(rows["violations"].sum())))
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def _ratio(value: float, reference: float) -> float:
    return float(value / reference) if reference else float("nan")


@dataclass(eq=False)
class Logged:
    """A policy whose decisions are recorded as a decision log (what the API logs, plus the truth needed to
    judge an off-policy estimate): per period and SKU with an arm, the arm, its propensity, the open arms,
    the views, the add-to-carts and, for the judge, the true add-to-cart rates of every arm."""

    policy: Policy
    records: list[dict] = field(default_factory=list)
    _last: tuple[Period, Choice] | None = None

    @property
    def name(self) -> str:
        return self.policy.name

    def choose(self, period: Period, rng: np.random.Generator) -> Choice:
        choice = self.policy.choose(period, rng)
        self._last = (period, choice)
        return choice

    def learn(self, arms: np.ndarray, views: np.ndarray, carts: np.ndarray) -> None:
        period, choice = self._last
        for i in np.flatnonzero(arms != NO_ARM):
            self.records.append({"t": period.t, "row": int(i), "arm": int(arms[i]),
                                 "propensity": float(choice.propensities[i, arms[i]]), "open": period.open_[i].copy(),
                                 "views": float(views[i]), "add_to_carts": float(carts[i]),
                                 "true_rate": period.true_rate[i].copy()})
        self.policy.learn(arms, views, carts)

    def next_day(self) -> None:
        self.policy.next_day()


def off_policy_estimates(shelf: Shelf, records: list[dict], candidate_rate: np.ndarray) -> dict[str, Estimate]:
    """Off-policy estimates, from a `Logged` policy's records, of the candidate that takes the open arm of
    greatest profit under `candidate_rate` [skus, arms] (e.g. the static optimizer: the model's rates), in
    true profit per logged decision: `ips`, `dr` (reward model: the candidate's own rates), and what they
    estimate, `truth` (the candidate's true expected profit on the same decisions; stderr 0), and the logging
    policy's own value: `on_policy` (its realised profits) and `logged` (their true expectation)."""
    if not records:
        raise ValueError("no logged decisions")
    world = shelf.world
    per_unit = world.purchase_given_cart * (1 + world.params.extra_quantity_mean)
    rows = np.array([r["row"] for r in records])
    arms = np.array([r["arm"] for r in records])
    open_ = np.stack([r["open"] for r in records])
    views = np.array([r["views"] for r in records])
    carts = np.array([r["add_to_carts"] for r in records])
    true_rate = np.nan_to_num(np.stack([r["true_rate"] for r in records]))
    logged = np.array([r["propensity"] for r in records])
    grid, cost = shelf.grid[rows], shelf.unit_cost[rows]
    margin = np.nan_to_num(margins(grid, cost))
    target = greedy(grid, cost, candidate_rate[rows], open_).propensities
    index = np.arange(len(rows))
    reward = margin[index, arms] * carts * per_unit
    expected = margin * true_rate * views[:, None] * per_unit  # per arm, given the period's views
    q = margin * np.nan_to_num(candidate_rate[rows]) * views[:, None] * per_unit

    def exact(values: np.ndarray) -> Estimate:
        return Estimate(float(values.mean()), 0.0, len(values), float(len(values)))

    return {"ips": ips(arms, reward, logged, target), "dr": doubly_robust(arms, reward, logged, target, q),
            "truth": exact(np.sum(target * expected, axis=1)), "on_policy": on_policy(reward),
            "logged": exact(expected[index, arms])}
