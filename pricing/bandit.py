"""Prices that learn: a Thompson-sampling pricing bandit over a fixed price grid per SKU.

Per SKU, the arms are the prices `anchor x GRID_RATIOS` (moved to the policy's price ending) that the
static guardrails allow (margin floor, MAP, competitor band); each period, the arms the daily change limit
allows around the current price are open. The unknown is each arm's add-to-cart rate per view (the price
moves the add-to-cart step of the funnel; units per cart do not depend on the price, so they do not move
the best arm). The prior is the demand model's rate m at each arm, read as a level and an elasticity
(`log_linear`); the posterior corrects both:

    add-to-carts ~ Poisson(views x m x exp(level + slope x log(price / anchor)))
    category (level, slope) ~ N(0, category sds)        pooled over the category's SKUs
    SKU (level, slope)      ~ N(category's, SKU sds)

fitted by Newton's method (Laplace approximation: a Gaussian posterior per SKU), first per category, then
per SKU around it. So the bandit starts where the batch model is, and what the SKUs of a category show
(say that it is more elastic than the model thinks) moves every SKU of it. The sufficient statistics are
the views and add-to-carts per (SKU, arm); they can decay (`decay` per day) to track drifting demand.

Selection rules (each returns the chosen arm and every arm's probability of being chosen, its propensity,
summing to one over the open arms): `thompson` (the bandit; the share of traffic that explores is
settable, the rest takes the posterior best), `greedy` (the static optimizer on the model's rates, the
oracle on the true ones), `epsilon_greedy` and `bayes_ucb` (baselines). Pure numpy.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from pricing.guardrails import DEFAULT_GUARDRAILS, Guardrails, Market, market_interval

BANDIT = "bandit"
# Grid prices relative to the SKU's anchor price (its price when the bandit starts): about 5% apart, so
# the daily change limit (10% by default) always leaves a few arms open around the current price.
GRID_RATIOS = np.exp(np.linspace(np.log(0.6), np.log(1.6), 21))
# Prices are compared to the cent; a guardrail bound computed in floating point may miss by less.
TOLERANCE = 1e-6
NO_ARM = -1  # no grid price is open (the guardrails leave none): the caller prices without the bandit


@dataclass(frozen=True)
class BanditConfig:
    """How far the bandit lets the data move it from the model, how it explores and how it forgets."""

    category_level_sd: float = 0.3  # prior sd of a category's log correction of the model's rate level
    category_slope_sd: float = 0.5  # ... of its correction of the model's elasticity
    sku_level_sd: float = 0.3  # prior sd of a SKU's level around its category's
    sku_slope_sd: float = 0.5  # ... of its elasticity around its category's
    explore_share: float = 1.0  # share of decisions made by Thompson sampling; the rest take the posterior-mean best
    draws: int = 256  # posterior draws per decision, to estimate the propensities
    decay: float = 1.0  # evidence kept per day (1: all of it); below 1 tracks drifting demand

    def __post_init__(self) -> None:
        sds = (self.category_level_sd, self.category_slope_sd, self.sku_level_sd, self.sku_slope_sd)
        if not all(0 < sd < np.inf for sd in sds):
            raise ValueError(f"prior standard deviations must be positive and finite, got {sds}")
        if not 0 <= self.explore_share <= 1:
            raise ValueError(f"explore_share must be in [0, 1], got {self.explore_share}")
        if self.draws < 1:
            raise ValueError(f"draws must be >= 1, got {self.draws}")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")


DEFAULT_BANDIT = BanditConfig()


def snap_to_ending(prices: np.ndarray, ending: float | None) -> np.ndarray:
    """Prices moved to the nearest price ending in `ending` (e.g. 12.99), to the cent; None: to the cent."""
    prices = np.asarray(prices, dtype=float)
    if ending is None:
        return np.round(prices, 2)
    below = np.round(np.floor(prices - ending) + ending, 2)
    return np.where(prices - below > 0.5, np.round(below + 1, 2), below)


def price_grid(anchor, unit_cost, competitor_price=None, map_price=None, rails: Guardrails = DEFAULT_GUARDRAILS,
               ratios: np.ndarray = GRID_RATIOS) -> np.ndarray:
    """The arms: one row per SKU, one column per ratio; `anchor x ratio` moved to the price ending, NaN where
    the static guardrails (floor, MAP, competitor band) forbid it or an earlier column has the same price."""
    market = Market.of(unit_cost, None, competitor_price, map_price)
    anchor = np.broadcast_to(np.asarray(anchor, dtype=float), market.shape)
    if not np.all(np.isfinite(anchor) & (anchor > 0)):
        raise ValueError("anchor prices must be positive and finite")
    interval = market_interval(market, rails)
    grid = snap_to_ending(anchor[:, None] * np.asarray(ratios)[None, :], rails.price_ending)
    inside = (grid >= interval.low[:, None] - TOLERANCE) & (grid <= interval.high[:, None] + TOLERANCE) & (grid > 0)
    repeated = np.zeros_like(inside)
    repeated[:, 1:] = grid[:, 1:] == grid[:, :-1]  # cheap SKUs: neighbouring ratios end on the same price
    return np.where(inside & ~repeated, grid, np.nan)


def open_arms(grid: np.ndarray, unit_cost, current_price=None, competitor_price=None, map_price=None,
              rails: Guardrails = DEFAULT_GUARDRAILS) -> np.ndarray:
    """[skus, arms] True where the arm's price is inside every guardrail today (with the daily change limit
    around `current_price`)."""
    interval = market_interval(Market.of(unit_cost, current_price, competitor_price, map_price), rails)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(grid) & (grid >= interval.low[:, None] - TOLERANCE)
                & (grid <= interval.high[:, None] + TOLERANCE))


NEWTON_STEPS = 12
MAX_LOG_CORRECTION = 5.0  # |log correction| beyond this (x150) is not a correction but a broken model


@dataclass(frozen=True, eq=False)
class Posterior:
    """Per SKU, the Gaussian (Laplace) posterior of its correction (level, slope) of the model's curve:
    mean [skus, 2] and covariance [skus, 2, 2]; `x` [skus, arms] is each arm's log(price / anchor)."""

    mean: np.ndarray
    cov: np.ndarray
    x: np.ndarray
    prior_rate: np.ndarray

    def take(self, rows: np.ndarray) -> Posterior:
        """The posterior of some SKUs (row indexes)."""
        return Posterior(self.mean[rows], self.cov[rows], self.x[rows], self.prior_rate[rows])

    def log_sd(self) -> np.ndarray:
        """[skus, arms] the sd of each arm's log rate."""
        var = self.cov[:, 0, 0, None] + 2 * self.cov[:, 0, 1, None] * self.x + self.cov[:, 1, 1, None] * self.x**2
        return np.sqrt(np.maximum(var, 0.0))

    def rate(self, level: np.ndarray | None = None, slope: np.ndarray | None = None) -> np.ndarray:
        """Add-to-cart rates at every arm for corrections (default: the posterior mode), broadcast
        [..., skus] with the arms last."""
        level = self.mean[:, 0] if level is None else level
        slope = self.mean[:, 1] if slope is None else slope
        return self.prior_rate * np.exp(np.clip(level[..., None] + slope[..., None] * self.x,
                                                -MAX_LOG_CORRECTION, MAX_LOG_CORRECTION))

    def quantile_rate(self, q: float) -> np.ndarray:
        """[skus, arms] each arm's rate at the posterior quantile `q`."""
        return self.rate() * np.exp(stats.norm.ppf(q) * self.log_sd())

    def sample(self, rng: np.random.Generator, draws: int) -> np.ndarray:
        """[draws, skus, arms] rates under `draws` posterior draws of each SKU's correction."""
        chol = np.linalg.cholesky(self.cov)
        z = rng.standard_normal((draws, len(self.mean), 2))
        level_slope = self.mean[None] + np.einsum("sij,dsj->dsi", chol, z)
        return self.rate(level_slope[..., 0], level_slope[..., 1])


def _newton(views: np.ndarray, carts: np.ndarray, prior_rate: np.ndarray, x: np.ndarray, prior_mean: np.ndarray,
            prior_precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mode and covariance (inverse Hessian) of (level, slope) per row of the Poisson model
    carts ~ Poisson(views x prior_rate x exp(level + slope x)) under a Gaussian prior. Rows are
    independent: [rows, arms] data, [rows, 2] prior mean, [2, 2] prior precision."""
    theta = prior_mean.copy()
    features = np.stack([np.ones_like(x), x], axis=-1)  # [rows, arms, 2]
    expected_at_model = views * prior_rate
    for _ in range(NEWTON_STEPS):
        correction = np.exp(np.clip(theta[:, 0, None] + theta[:, 1, None] * x, -MAX_LOG_CORRECTION,
                                    MAX_LOG_CORRECTION))
        mu = expected_at_model * correction
        gradient = np.einsum("ra,rak->rk", carts - mu, features) - (theta - prior_mean) @ prior_precision
        hessian = np.einsum("ra,rak,ral->rkl", mu, features, features) + prior_precision
        theta = theta + np.linalg.solve(hessian, gradient[..., None])[..., 0]
    correction = np.exp(np.clip(theta[:, 0, None] + theta[:, 1, None] * x, -MAX_LOG_CORRECTION, MAX_LOG_CORRECTION))
    hessian = np.einsum("ra,rak,ral->rkl", expected_at_model * correction, features, features) + prior_precision
    return theta, np.linalg.inv(hessian)


def log_linear(grid: np.ndarray, anchor: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """[skus, arms] the least-squares fit of log rate = level + elasticity x log(price / anchor) over each
    SKU's grid prices (NaN off the grid). A tree model's price-response is a staircase: the bandit keeps its
    level and elasticity, not its steps, which an optimizer would chase and the outcomes cannot correct."""
    arm = np.isfinite(grid)
    x = np.where(arm, np.log(np.where(arm, grid, 1.0) / anchor[:, None]), 0.0)
    y = np.where(arm, np.log(np.where(arm, rate, 1.0)), 0.0)
    n = arm.sum(axis=1)
    x_mean = np.sum(x, axis=1) / np.maximum(n, 1)
    y_mean = np.sum(y, axis=1) / np.maximum(n, 1)
    dx = np.where(arm, x - x_mean[:, None], 0.0)
    spread = np.sum(dx**2, axis=1)
    slope = np.where(spread > 0, np.sum(dx * (y - y_mean[:, None]), axis=1) / np.where(spread > 0, spread, 1.0), 0.0)
    return np.where(arm, np.exp(y_mean[:, None] + slope[:, None] * (x - x_mean[:, None])), np.nan)


def _prior(grid: np.ndarray, anchor: np.ndarray, rate) -> np.ndarray:
    """The prior the bandit keeps of a model's rates on the grid: their log-linear fit (`log_linear`)."""
    rate = np.asarray(rate, dtype=float)
    if grid.shape != rate.shape:
        raise ValueError(f"grid {grid.shape} and prior_rate {rate.shape} must be [skus, arms]")
    arm = np.isfinite(grid)
    if not np.all(np.isfinite(rate[arm]) & (rate[arm] > 0)):
        raise ValueError("prior_rate must be positive and finite at every grid price")
    return log_linear(grid, anchor, rate)


@dataclass(eq=False)
class BanditState:
    """What the bandit knows, one row per SKU and one column per arm: the grid, the model's prior add-to-cart
    rate per view, and the (decayed) views and add-to-carts observed at each arm. The SKU's anchor price
    (`x` = log(price / anchor)) is where the correction's slope pivots."""

    skus: np.ndarray  # [skus] ids
    categories: np.ndarray  # [skus] category names
    unit_cost: np.ndarray  # [skus]
    anchor: np.ndarray  # [skus]
    grid: np.ndarray  # [skus, arms] prices, NaN: not an arm
    prior_rate: np.ndarray  # [skus, arms] the demand model's add-to-carts per view
    views: np.ndarray  # [skus, arms]
    carts: np.ndarray  # [skus, arms]
    config: BanditConfig = DEFAULT_BANDIT
    model_version: str | None = None  # the demand model version the prior comes from
    _posterior: Posterior | None = field(default=None, init=False, repr=False)  # until the evidence changes

    @classmethod
    def start(cls, skus, categories, unit_cost, anchor, grid: np.ndarray, prior_rate: np.ndarray,
              config: BanditConfig = DEFAULT_BANDIT, model_version: str | None = None) -> BanditState:
        """A bandit that has seen nothing yet; `prior_rate` must be positive wherever the grid has a price."""
        grid = np.asarray(grid, dtype=float)
        if grid.ndim != 2 or len(skus) != grid.shape[0]:
            raise ValueError(f"grid {grid.shape} must be [skus={len(skus)}, arms]")
        n = len(skus)
        anchor = np.broadcast_to(np.asarray(anchor, dtype=float), n).copy()
        return cls(np.asarray(skus).astype(str), np.asarray(categories).astype(str),
                   np.broadcast_to(np.asarray(unit_cost, dtype=float), n).copy(), anchor, grid,
                   _prior(grid, anchor, prior_rate), np.zeros(grid.shape), np.zeros(grid.shape), config, model_version)

    def extend(self, skus, categories, unit_cost, anchor, grid: np.ndarray, prior_rate: np.ndarray) -> None:
        """Add SKUs new to the bandit, with the model's prior and no evidence (as `start`)."""
        new = BanditState.start(skus, categories, unit_cost, anchor, grid, prior_rate, self.config)
        known = sorted(set(self.skus.tolist()) & set(new.skus.tolist()))
        if known:
            raise ValueError(f"SKUs the bandit already prices: {known[:5]}")
        if new.grid.shape[1] != self.grid.shape[1]:
            raise ValueError(f"new SKUs need the state's {self.grid.shape[1]} arms, got {new.grid.shape[1]}")
        for name in ("skus", "categories", "unit_cost", "anchor", "grid", "prior_rate", "views", "carts"):
            setattr(self, name, np.concatenate([getattr(self, name), getattr(new, name)]))
        self._posterior = None

    def reanchor(self, rows, prior_rate: np.ndarray, model_version: str | None) -> None:
        """A new model's prior for the SKU rows `rows` ([rows, arms] its rates on their grid). The evidence
        is kept: it counts what shoppers did at the grid's prices, whatever the model, so the posterior
        re-fits its correction around the new prior from the same outcomes."""
        rows = np.asarray(rows, dtype=np.int64)
        self.prior_rate[rows] = _prior(self.grid[rows], self.anchor[rows], prior_rate)
        self.model_version = model_version
        self._posterior = None

    def rows(self, skus) -> np.ndarray:
        """Row indexes of SKU ids; KeyError naming unknown ones."""
        index = {sku: i for i, sku in enumerate(self.skus.tolist())}
        missing = [s for s in np.atleast_1d(skus).tolist() if s not in index]
        if missing:
            raise KeyError(f"SKUs the bandit does not price: {missing[:5]}")
        return np.array([index[s] for s in np.atleast_1d(skus).tolist()], dtype=np.int64)

    def observe(self, rows, arms, views, carts) -> None:
        """Add outcomes: per (row, arm) pair, views and add-to-carts (repeated pairs add up)."""
        rows, arms = np.asarray(rows, dtype=np.int64), np.asarray(arms, dtype=np.int64)
        views, carts = np.asarray(views, dtype=float), np.asarray(carts, dtype=float)
        if np.any(arms < 0) or np.any(~np.isfinite(self.grid[rows, arms])):
            raise ValueError("outcomes must be of grid prices (arms with a price)")
        if np.any(views < 0) or np.any(carts < 0):
            raise ValueError("views and add-to-carts must be >= 0")
        np.add.at(self.views, (rows, arms), views)
        np.add.at(self.carts, (rows, arms), carts)
        self._posterior = None

    def forget(self, days: float = 1.0) -> None:
        """Age the evidence by `days`: each day keeps `config.decay` of it."""
        keep = self.config.decay ** days
        self.views *= keep
        self.carts *= keep
        self._posterior = None

    def posterior(self) -> Posterior:
        """The corrections' posterior: first each category's (level, slope), from all its SKUs' outcomes
        pooled, under a prior centred on the model (no correction); then each SKU's, under a prior centred
        on its category's. The SKU's covariance adds its category's: the centre is uncertain too. Kept until
        outcomes arrive or the evidence ages."""
        if self._posterior is None:
            self._posterior = self._fit()
        return self._posterior

    def _fit(self) -> Posterior:
        c = self.config
        arm = np.isfinite(self.grid)
        x = np.where(arm, np.log(np.where(arm, self.grid, 1.0) / self.anchor[:, None]), 0.0)
        views, carts = np.where(arm, self.views, 0.0), np.where(arm, self.carts, 0.0)
        prior_rate = np.where(arm, self.prior_rate, 1.0)
        codes, inverse = np.unique(self.categories, return_inverse=True)
        # Category stage: every SKU's arms side by side in one row per category.
        width = np.bincount(inverse).max() * x.shape[1]
        pooled = [np.zeros((len(codes), width)) for _ in range(4)]
        order = np.argsort(inverse, kind="stable")
        slot = np.empty(len(self.skus), dtype=np.int64)
        slot[order] = np.arange(len(order)) - np.searchsorted(inverse[order], inverse[order])  # rank in category
        columns = slot[:, None] * x.shape[1] + np.arange(x.shape[1])[None, :]
        for target, values in zip(pooled, (views, carts, prior_rate, x), strict=True):
            target[inverse[:, None], columns] = values
        category_precision = np.diag([c.category_level_sd**-2, c.category_slope_sd**-2])
        category_mean, category_cov = _newton(*pooled, np.zeros((len(codes), 2)), category_precision)
        sku_precision = np.diag([c.sku_level_sd**-2, c.sku_slope_sd**-2])
        mean, cov = _newton(views, carts, prior_rate, x, category_mean[inverse], sku_precision)
        return Posterior(mean, cov + category_cov[inverse], x, np.where(arm, self.prior_rate, np.nan))

    # --- persistence: the state survives a restart ---------------------------------------------------
    def to_json(self) -> dict:
        nan_free = {k: np.where(np.isfinite(v), v, None).tolist() for k, v in
                    (("grid", self.grid), ("prior_rate", self.prior_rate))}
        return {"skus": self.skus.tolist(), "categories": self.categories.tolist(),
                "unit_cost": self.unit_cost.tolist(), "anchor": self.anchor.tolist(), **nan_free,
                "views": self.views.tolist(), "carts": self.carts.tolist(), "config": asdict(self.config),
                "model_version": self.model_version}

    @classmethod
    def from_json(cls, data: dict) -> BanditState:
        arrays = {k: np.array(data[k], dtype=float)
                  for k in ("unit_cost", "anchor", "grid", "prior_rate", "views", "carts")}
        return cls(np.array(data["skus"]).astype(str), np.array(data["categories"]).astype(str),
                   **arrays, config=BanditConfig(**data["config"]), model_version=data.get("model_version"))

    def save(self, path: Path) -> None:
        """Write the state to `path` atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_json()))
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> BanditState:
        return cls.from_json(json.loads(Path(path).read_text()))


@dataclass(frozen=True, eq=False)
class Choice:
    """One decision per SKU row: the arm chosen (NO_ARM where none was open), its price (NaN there), and
    every arm's probability of being chosen (one row sums to one over the open arms; zeros for NO_ARM)."""

    arms: np.ndarray
    prices: np.ndarray
    propensities: np.ndarray

    @property
    def propensity(self) -> np.ndarray:
        """The probability of the arm chosen (1 where no arm was open: the caller's fallback is certain)."""
        rows = np.arange(len(self.arms))
        return np.where(self.arms == NO_ARM, 1.0, self.propensities[rows, np.maximum(self.arms, 0)])


def _argmax_open(scores: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """Index of the best open arm along the last axis (NO_ARM where none is open)."""
    best = np.argmax(np.where(open_, scores, -np.inf), axis=-1)
    return np.where(open_.any(axis=-1), best, NO_ARM)


def _one_hot(arms: np.ndarray, n_arms: int) -> np.ndarray:
    out = np.zeros((len(arms), n_arms))
    chosen = arms != NO_ARM
    out[np.flatnonzero(chosen), arms[chosen]] = 1.0
    return out


def _choice(grid: np.ndarray, arms: np.ndarray, propensities: np.ndarray) -> Choice:
    rows = np.arange(len(arms))
    prices = np.where(arms == NO_ARM, np.nan, grid[rows, np.maximum(arms, 0)])
    return Choice(arms, prices, propensities)


def margins(grid: np.ndarray, unit_cost: np.ndarray) -> np.ndarray:
    """[skus, arms] profit per unit at each grid price."""
    return grid - np.asarray(unit_cost, dtype=float)[:, None]


def greedy(grid: np.ndarray, unit_cost, rate: np.ndarray, open_: np.ndarray) -> Choice:
    """The open arm of greatest expected profit per view, (price - cost) x rate, chosen for certain."""
    arms = _argmax_open(margins(grid, unit_cost) * rate, open_)
    return _choice(grid, arms, _one_hot(arms, grid.shape[1]))


def thompson(state: BanditState, open_: np.ndarray, rng: np.random.Generator, rows=None,
             explore_share: float | None = None) -> Choice:
    """Thompson sampling for the SKU rows `rows` (default all; `open_` is theirs): with probability
    `explore_share` (default the state's config's), the open arm of greatest profit under one posterior
    draw, else the posterior best.
    Propensities are estimated from `draws` posterior draws, the first of which makes the decision, so the
    arm chosen always has a propensity > 0."""
    rows = np.arange(len(state.skus)) if rows is None else np.asarray(rows, dtype=np.int64)
    posterior, grid = state.posterior().take(rows), state.grid[rows]
    margin = margins(grid, state.unit_cost[rows])
    n_arms = grid.shape[1]
    sampled = _argmax_open(posterior.sample(rng, state.config.draws) * margin, open_)  # [draws, skus]
    counts = np.stack([np.bincount(np.maximum(col, 0), weights=(col != NO_ARM), minlength=n_arms)
                       for col in sampled.T])
    best = _argmax_open(margin * posterior.rate(), open_)
    share = state.config.explore_share if explore_share is None else explore_share
    if not 0 <= share <= 1:
        raise ValueError(f"explore_share must be in [0, 1], got {share}")
    propensities = share * counts / state.config.draws + (1 - share) * _one_hot(best, n_arms)
    explore = rng.random(len(best)) < share
    return _choice(grid, np.where(explore, sampled[0], best), propensities)


def epsilon_greedy(grid: np.ndarray, unit_cost, rate: np.ndarray, open_: np.ndarray, epsilon: float,
                   rng: np.random.Generator) -> Choice:
    """With probability `epsilon` an open arm uniformly at random, else the best by `rate`."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    n_open = open_.sum(axis=1, keepdims=True)
    uniform = np.where(open_, 1.0 / np.maximum(n_open, 1), 0.0)
    best = greedy(grid, unit_cost, rate, open_)
    propensities = epsilon * uniform + (1 - epsilon) * best.propensities
    random_arm = _argmax_open(rng.random(open_.shape), open_)
    arms = np.where(rng.random(len(grid)) < epsilon, random_arm, best.arms)
    return _choice(grid, arms, propensities)


def bayes_ucb(state: BanditState, open_: np.ndarray, t: int) -> Choice:
    """Bayes-UCB (Kaufmann et al.): the open arm of greatest profit at the posterior's 1 - 1/t quantile."""
    return greedy(state.grid, state.unit_cost, state.posterior().quantile_rate(1 - 1 / max(t, 2)), open_)
