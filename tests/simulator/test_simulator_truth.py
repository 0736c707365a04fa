"""The simulator's ground truth is recoverable from its data: elasticities, shipping noise, anomalies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lakehouse.schemas.landing import CLICKSTREAM, TRANSACTIONS
from simulator.config import CATEGORY_PARAMS, SimConfig
from simulator.events import events_between, simulate_day
from simulator.sources import fx_rates, market_prices, shipping_rates, shipping_zones
from simulator.truth import Truth, sku_table
from simulator.world import World


def _canonical_sku(raw: pd.Series) -> pd.Series:
    return "SKU-" + raw.str.extract(r"(\d+)")[0].astype(int).map("{:06d}".format)


def _poisson_fixed_effects(y, exposure, x, group, iters: int = 50) -> np.ndarray:
    """Slopes b of y ~ Poisson(exposure * exp(a[group] + x @ b)), the group effects profiled out."""
    b = np.zeros(x.shape[1])
    for _ in range(iters):
        mu0 = exposure * np.exp(x @ b)
        mu = mu0 * (np.bincount(group, y) / np.bincount(group, mu0))[group]
        x_mean = np.stack([np.bincount(group, mu * col) for col in x.T], 1) / np.bincount(group, mu)[:, None]
        xc = x - x_mean[group]
        step = np.linalg.solve((xc * mu[:, None]).T @ xc, xc.T @ (y - mu))
        b += step
        if np.abs(step).max() < 1e-10:
            break
    return b


def test_price_elasticity_is_recovered_from_clickstream_and_competitor_prices():
    """Conversion (purchase lines per view) regressed on log own price and log competitor minimum
    price with SKU fixed effects recovers each category's configured mean elasticity and gamma.

    Seasonality and anchor campaigns act on views, which are the exposure, so they drop out.
    Tolerance: ~0.13 standard error per category plus the spread of SKU elasticities around the
    category mean (sd 0.25 over ~20 SKUs of unequal weight), so 0.6 per category, 0.25 on average.
    """
    world = World(SimConfig(seed=11, skus=200, days=40, scale=4))
    frames = []
    for day in range(world.n_days):
        events = simulate_day(world, day).clickstream
        events = events[events["event_type"].isin(["view", "purchase"])]
        g = events.groupby(["sku", "event_type"]).agg(n=("event_id", "size"), price=("price_shown", "first"))
        g = g.unstack("event_type")
        quotes = market_prices(world, day)
        rate = fx_rates(world, day).set_index("currency")["rate_to_usd"]
        competitor_min = (quotes["price"] * quotes["currency"].map(rate)).groupby(
            _canonical_sku(quotes["sku"])).min()
        frames.append(pd.DataFrame({
            "views": g[("n", "view")], "lines": g[("n", "purchase")].fillna(0), "price": g[("price", "view")],
            "competitor_min": competitor_min.reindex(g.index)}).reset_index())
    data = pd.concat(frames, ignore_index=True).dropna(subset=["views"])
    # SKUs never bought carry no information on slopes once their fixed effect is free.
    data = data[data.groupby("sku")["lines"].transform("sum") > 0]
    skus, group = np.unique(data["sku"], return_inverse=True)
    category = world.category[np.searchsorted(world.sku_id, skus)][group]
    log_price = np.log(data["price"].to_numpy())
    # An SKU no competitor sells has a constant competitor term, absorbed by its fixed effect.
    log_competitor = np.log(data["competitor_min"].fillna(1.0).to_numpy())
    x = np.column_stack([np.eye(len(CATEGORY_PARAMS))[category] * log_price[:, None], log_competitor])
    slopes = _poisson_fixed_effects(data["lines"].to_numpy(float), data["views"].to_numpy(float), x, group)

    configured = np.array([c[1] for c in CATEGORY_PARAMS])
    truth = np.array([world.elasticity[world.category == c].mean() for c in range(len(CATEGORY_PARAMS))])
    assert np.abs(truth - configured).max() < 0.2  # the per-SKU noise is centred on the category mean
    assert np.abs(slopes[:-1] - truth).max() < 0.6
    assert np.abs(slopes[:-1] - truth).mean() < 0.25
    assert np.corrcoef(slopes[:-1], configured)[0, 1] > 0.9
    assert slopes[-1] == pytest.approx(world.params.gamma, abs=0.15)


def _rate_card_cost_from_landing(world: World, orders: pd.DataFrame) -> np.ndarray:
    """Recompute each order's rate-card cost from the landing rate card and zone chart alone."""
    rates = pd.concat([df for d in range(world.n_days) if (df := shipping_rates(world, d)) is not None])
    zones = shipping_zones(world, 0).set_index("postal_prefix")
    prefix = orders["postal_code"].str.strip().str.split("-").str[0].str.zfill(5).str[:3]
    divisor = rates.groupby("carrier")["volumetric_divisor"].first()
    billable = np.maximum(orders["weight_kg"], orders["volume_cm3"] / orders["carrier"].map(divisor)).to_numpy()
    effective = np.sort(rates["effective_from"].unique())
    breaks = np.sort(rates["weight_break_kg"].unique())
    keys = pd.DataFrame({
        "carrier": orders["carrier"].to_numpy(), "service_level": orders["service_level"].to_numpy(),
        "zone": prefix.map(zones["zone"]).to_numpy(),
        "effective_from": effective[np.searchsorted(effective, orders["date"], side="right") - 1],
        "weight_break_kg": breaks[np.minimum(np.searchsorted(breaks, billable), len(breaks) - 1)]})
    card = keys.merge(rates, how="left", on=list(keys.columns), validate="many_to_one")
    over = np.maximum(0, billable - breaks[-1])
    remote = prefix.map(zones["is_remote"]).to_numpy(dtype=bool)
    return ((card["base_rate"] + card["per_kg_over"] * over) * (1 + card["fuel_surcharge_pct"] / 100)
            + np.where(remote, card["remote_surcharge"], 0.0)).to_numpy()


def test_shipping_invoices_are_rate_card_times_known_noise_plus_injected_anomalies():
    world = World(SimConfig(seed=5, skus=200, days=20, scale=3))
    params = world.params
    days = [simulate_day(world, day) for day in range(world.n_days)]
    lines = pd.concat([d.transactions for d in days], ignore_index=True)
    shipments = pd.concat([d.shipments for d in days], ignore_index=True).set_index("order_id")
    items = sku_table(world).set_index("sku")
    lines["weight_kg"] = lines["quantity"] * lines["sku"].map(items["weight_kg"])
    lines["volume_cm3"] = lines["quantity"] * lines["sku"].map(
        items["length_cm"] * items["width_cm"] * items["height_cm"])
    orders = lines.groupby("order_id").agg(
        weight_kg=("weight_kg", "sum"), volume_cm3=("volume_cm3", "sum"), carrier=("carrier", "first"),
        service_level=("service_level", "first"), postal_code=("postal_code", "first"),
        event_time=("event_time", "first"), actual=("actual_shipping_cost", "first"))
    orders["date"] = pd.to_datetime(orders["event_time"], utc=True, format="ISO8601").dt.date.astype(str)

    card = _rate_card_cost_from_landing(world, orders)
    truth = shipments.loc[orders.index]
    np.testing.assert_allclose(card, truth["rate_card_cost"], rtol=1e-9)
    assert set(orders["date"]) >= {world.config.day_date(0).isoformat(),
                                   world.config.day_date(world.n_days - 1).isoformat()}  # both rate cards

    log_ratio = np.log(orders["actual"].to_numpy() / card)
    flagged = truth["is_anomaly"].to_numpy()
    normal = log_ratio[~flagged]
    assert normal.std() == pytest.approx(params.shipping_noise_sigma, abs=0.003)
    assert normal.mean() == pytest.approx(0.0, abs=0.003)
    n, rate = len(flagged), params.anomaly_rate
    assert abs(flagged.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    # Overcharges stand out: beyond 5 sigma of noise, every invoice is an injected anomaly...
    assert not np.any(normal > 5 * params.shipping_noise_sigma)
    # ...and the anomaly factor, with the noise divided out, lies in the configured range.
    factor = np.exp(log_ratio[flagged]) / truth["noise"].to_numpy()[flagged]
    lo, hi = params.anomaly_range
    assert factor.min() >= lo * 0.99 and factor.max() <= hi * 1.01
    # The customer pays the rate card plus markup, or nothing for standard orders above the threshold.
    free = (truth["service"] == "standard") & (truth["subtotal_usd"] >= params.free_shipping_threshold)
    charged = np.where(free, 0.0, np.round(card * (1 + params.shipping_markup), 2))
    np.testing.assert_allclose(truth["shipping_charged_usd"], charged, atol=0.005)


def test_oracle_price_maximises_expected_profit():
    world = World(SimConfig(seed=2, skus=120, days=5))
    oracle = Truth(world)
    when = world.config.day_date(3)
    skus = world.sku_id[world.is_active(3)]
    best = oracle.optimal_price(skus, when)
    cost, cmin = oracle.unit_cost(skus, when), oracle.competitor_min_price(skus, when)
    for factor in (0.9, 0.97, 1.03, 1.1):
        assert np.all((best - cost) * oracle.expected_demand(skus, best, cmin, when)
                      >= (best * factor - cost) * oracle.expected_demand(skus, best * factor, cmin, when))
    assert np.all(best > cost)


def test_live_windows_partition_the_day_in_landing_columns():
    world = World(SimConfig(seed=4, skus=120, days=5))
    start = datetime.combine(world.config.day_date(2), datetime.min.time(), tzinfo=UTC)
    cut = start + timedelta(hours=13, minutes=7)
    day = simulate_day(world, 2)
    first, second = events_between(world, start, cut), events_between(world, cut, start + timedelta(days=1))
    assert list(first.clickstream.columns) == CLICKSTREAM.fieldNames()
    assert list(first.transactions.columns) == TRANSACTIONS.fieldNames()
    assert len(first.clickstream) > 0 and len(second.clickstream) > 0
    both = pd.concat([first.clickstream, second.clickstream])
    assert sorted(both["event_id"]) == sorted(day.clickstream["event_id"])
    times = pd.to_datetime(first.clickstream["event_time"], utc=True, format="ISO8601")
    assert times.min() >= start and times.max() < cut
    purchases = both[both["event_type"] == "purchase"]
    lines = pd.concat([first.transactions, second.transactions])
    # Every purchase event is an order line of the same session and order.
    assert sorted(zip(purchases["order_id"], purchases["session_id"], purchases["sku"], strict=True)) == sorted(
        zip(lines["order_id"], lines["session_id"], lines["sku"], strict=True))
