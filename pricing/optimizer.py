"""The profit-maximising price per SKU on a grid over what the guardrails allow, plus the price-response
curve and the implied elasticity of any demand function.

A demand function maps a price matrix [skus, k] (row i: prices for SKU i) to expected demand of the same
shape: units, or a purchase probability per view (the argmax is the same). It holds the SKUs' features
itself (a closure over a model and a feature matrix), so this module stays model-agnostic. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pricing.guardrails import (
    DEFAULT_GUARDRAILS,
    Decision,
    Guardrails,
    Market,
    decide,
    market_interval,
    positive_prices,
)

DemandFn = Callable[[np.ndarray], np.ndarray]

OPTIMIZER = "optimizer"
DEFAULT_GRID_POINTS = 41
# Where no current price and no competitor price bound the price from above, search up to this multiple of
# the floor (3.3x cost at the default 10% margin: the optimum of demand with elasticity -1.43).
DEFAULT_MAX_OVER_FLOOR = 3.0
# The probe one step beyond each end of the interval: it tells whether a rule held the optimum back.
PROBE_STEP = 0.01


def evaluate_demand(demand_fn: DemandFn, prices: np.ndarray) -> np.ndarray:
    """demand_fn(prices), checked: same shape as the prices, finite and non-negative."""
    demand = np.asarray(demand_fn(prices), dtype=float)
    if demand.shape != prices.shape:
        raise ValueError(f"demand_fn must return one value per price, shape {prices.shape}; got {demand.shape}")
    bad = ~(np.isfinite(demand) & (demand >= 0))
    if np.any(bad):
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"demand_fn returned negative or non-finite demand for {rows.size} SKU(s), first rows "
                         f"{rows[:5].tolist()}: {demand[bad][:5].tolist()}")
    return demand


def price_grid(low: np.ndarray, high: np.ndarray, grid_points: int) -> np.ndarray:
    """[skus, grid_points] evenly spaced prices from low to high inclusive, never outside [low, high]."""
    if grid_points < 2:
        raise ValueError(f"grid_points must be at least 2, got {grid_points}")
    t = np.linspace(0.0, 1.0, grid_points)
    grid = low[:, None] * (1 - t) + high[:, None] * t  # ends exact: t = 0 gives low, t = 1 gives high
    return np.clip(grid, low[:, None], high[:, None])


def optimize(demand_fn: DemandFn, unit_cost, current_price=None, competitor_price=None, map_price=None,
             rails: Guardrails = DEFAULT_GUARDRAILS, grid_points: int = DEFAULT_GRID_POINTS,
             max_over_floor: float = DEFAULT_MAX_OVER_FLOOR) -> Decision:
    """The guardrail-clean price that maximises expected profit (price - cost) * demand, one row per SKU.

    The grid spans each SKU's feasible interval (open above: up to `max_over_floor` x the floor). One probe
    price `PROBE_STEP` beyond each finite end is evaluated in the same demand_fn call; where the best grid
    price is at an end and the probe beyond it earns more, the probe is the candidate, so the guardrails
    record the rule that held the optimum back. The price ending is then applied inside the interval.
    """
    if not max_over_floor > 1:
        raise ValueError(f"max_over_floor must be > 1, got {max_over_floor}")
    market = Market.of(unit_cost, current_price, competitor_price, map_price)
    interval = market_interval(market, rails)
    open_above = ~np.isfinite(interval.high)
    high = np.where(open_above, interval.low * max_over_floor, interval.high)
    grid = price_grid(interval.low, high, grid_points)
    probe_low = interval.low * (1 - PROBE_STEP)
    probe_high = high * (1 + PROBE_STEP)
    prices = np.column_stack([probe_low, grid, probe_high])
    profit = (prices - market.unit_cost[:, None]) * evaluate_demand(demand_fn, prices)

    rows = np.arange(len(grid))
    best = np.argmax(profit[:, 1:-1], axis=1)
    best_price, best_profit = grid[rows, best], profit[rows, best + 1]
    held_down = ~open_above & (best_price == high) & (profit[:, -1] > best_profit)
    held_up = (best_price == interval.low) & (profit[:, 0] > best_profit)
    candidate = np.where(held_down, probe_high, np.where(held_up, probe_low, best_price))
    return decide(candidate, interval, rails, OPTIMIZER)


def response_curve(demand_fn: DemandFn, unit_cost, prices) -> pd.DataFrame:
    """Demand, revenue and profit along price grids. `prices` is one grid [k] (one SKU) or [skus, k];
    `unit_cost` a scalar or one per SKU. Grain: one row per SKU and price (`sku_row` indexes the SKU)."""
    grid = np.atleast_2d(np.asarray(prices, dtype=float))
    if grid.ndim != 2 or not np.all(np.isfinite(grid) & (grid > 0)):
        raise ValueError("prices must be a 1-D or 2-D array of positive finite prices")
    cost = positive_prices("unit_cost", unit_cost)
    if cost.ndim > 1 or cost.size not in (1, grid.shape[0]):
        raise ValueError(f"unit_cost must be a scalar or one per price grid ({grid.shape[0]}), got shape {cost.shape}")
    cost = np.broadcast_to(cost, grid.shape[:1])
    demand = evaluate_demand(demand_fn, grid)
    return pd.DataFrame({
        "sku_row": np.repeat(np.arange(grid.shape[0]), grid.shape[1]),
        "price": grid.ravel(),
        "demand": demand.ravel(),
        "revenue": (grid * demand).ravel(),
        "profit": ((grid - cost[:, None]) * demand).ravel(),
    })


def implied_elasticity(demand_fn: DemandFn, price, eps: float = 0.01) -> np.ndarray:
    """d log demand / d log price at each SKU's price (one per SKU), by central difference at
    price * (1 -/+ eps); exact for constant-elasticity demand. NaN where demand is zero at either point."""
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    price = np.atleast_1d(positive_prices("price", price))
    if price.ndim != 1:
        raise ValueError(f"price must be a scalar or one per SKU, got shape {price.shape}")
    demand = evaluate_demand(demand_fn, np.column_stack([price * (1 - eps), price * (1 + eps)]))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(demand[:, 1]) - np.log(demand[:, 0])
    elasticity = log_ratio / (np.log1p(eps) - np.log1p(-eps))
    return np.where(np.all(demand > 0, axis=1), elasticity, np.nan)
