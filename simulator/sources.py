"""The batch sources' daily deliveries, rendered from the world as their senders write them.

Each function returns one day's clean DataFrame in landing-schema columns (or None when the source
sends nothing that day). Dirt is added afterwards by `simulator.dirt`.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from lakehouse.reference import CARRIERS, CATEGORIES, CURRENCIES, SEGMENTS, SERVICE_LEVELS
from lakehouse.schemas.landing import (
    CUSTOMERS,
    FX_RATES,
    MARKET_PRICES,
    PRODUCTS,
    SHIPPING_RATES,
    SHIPPING_ZONES,
    SUPPLIERS,
)
from simulator.config import COMPETITORS, VOLUMETRIC_DIVISOR, WEIGHT_BREAKS_KG, rng_for
from simulator.formats import postal_messy, sku_messy, zfill
from simulator.shipping import RateCard
from simulator.world import World

LB_PER_G = 1 / 453.59237
IN_PER_CM = 1 / 2.54
EUR = CURRENCIES.index("EUR")
CURRENCY_NAMES = np.asarray(CURRENCIES)
# Share of rows in which each sender spells the SKU in a non-canonical way.
PRODUCTS_DIRTY_SKU = 0.15
SUPPLIERS_DIRTY_SKU = 0.25
MARKET_DIRTY_SKU = 0.3


def _dates(world: World, days: np.ndarray) -> np.ndarray:
    return (np.datetime64(world.config.start_date, "D") + np.asarray(days)).astype(str)


def _snapshot_then_changes(world: World, day: int, changed: np.ndarray) -> np.ndarray:
    """SKU indexes a catalogue-like file holds: every launched SKU on day 0, then the day's launches
    and the active SKUs whose `changed[state day]` flag is set."""
    if day == 0:
        return np.flatnonzero(world.launch_day <= 0)
    return np.flatnonzero((world.launch_day == day) | (changed[world.state_day(day)] & world.is_active(day)))


def products(world: World, day: int) -> pd.DataFrame:
    """Catalogue rows: every launched SKU on day 0, then the day's launches and list-price changes."""
    rng = rng_for(world.config.seed, "products_file", day)
    d, i = world.state_day(day), _snapshot_then_changes(world, day, world.list_changed)
    unit = world.weight_unit[i]
    grams = world.weight_g[i].astype(float)
    weight = np.select([unit == "g", unit == "kg"], [grams, grams / 1000], np.round(grams * LB_PER_G, 4))
    inches = world.dim_unit[i] == "in"
    dims = np.where(inches[:, None], np.round(world.dims_cm[i] * IN_PER_CM, 2), world.dims_cm[i])
    eur = world.eur_listed[i]
    to_ccy = np.where(eur, 1 / world.fx[d, EUR], 1.0)
    df = pd.DataFrame({
        "sku": sku_messy(world.sku_number[i], rng, PRODUCTS_DIRTY_SKU),
        "product_name": world.product_name[i],
        "category": np.asarray(CATEGORIES)[world.category[i]],
        "brand": world.brand[i],
        "weight": weight,
        "weight_unit": unit,
        "length": dims[:, 0],
        "width": dims[:, 1],
        "height": dims[:, 2],
        "dim_unit": world.dim_unit[i],
        "list_price": np.round(world.list_price[d, i] * to_ccy, 2),
        "currency": np.where(eur, "EUR", "USD"),
        "launch_date": _dates(world, world.launch_day[i]),
        "map_price": np.round(world.map_price[d, i] * to_ccy, 2),
    }, columns=PRODUCTS.fieldNames())
    if day >= world.config.dirt.color_from_day and day > 0:
        df["color"] = world.color[i]
    return df


def suppliers(world: World, day: int) -> pd.DataFrame:
    """Cost list rows: every launched SKU on day 0, then the day's launches and cost changes."""
    rng = rng_for(world.config.seed, "suppliers_file", day)
    d, i = world.state_day(day), _snapshot_then_changes(world, day, world.cost_changed)
    sup = world.supplier_of[i]
    return pd.DataFrame({
        "supplier_id": world.supplier_id[sup],
        "supplier_name": world.supplier_name[sup],
        "sku": sku_messy(world.sku_number[i], rng, SUPPLIERS_DIRTY_SKU),
        "unit_cost": world.cost_local[d, i],
        "currency": CURRENCY_NAMES[world.supplier_currency[sup]],
        "lead_time_days": world.lead_time_days[i],
        "valid_from": _dates(world, np.full(len(i), day)),
    }, columns=SUPPLIERS.fieldNames())


def market_prices(world: World, day: int) -> pd.DataFrame:
    """Competitor quotes: one row per competitor and launched SKU it sells, scraped during the day."""
    rng = rng_for(world.config.seed, "market_file", day)
    d = world.state_day(day)
    sku, comp = np.nonzero(world.covered & world.is_active(day)[:, None])
    seconds = rng.uniform(0, 86400, len(sku))
    observed = pd.Timestamp(world.config.day_date(day), tz="UTC") + pd.to_timedelta(
        np.round(seconds * 1e6).astype(np.int64), unit="us")
    return pd.DataFrame({
        "sku": sku_messy(world.sku_number[sku], rng, MARKET_DIRTY_SKU),
        "competitor": np.asarray(COMPETITORS)[comp],
        "price": world.competitor_quote[d, sku, comp],
        "currency": CURRENCY_NAMES[world.competitor_currency[comp]],
        "observed_at": observed,
    }, columns=MARKET_PRICES.fieldNames())


def fx_rates(world: World, day: int) -> pd.DataFrame:
    """The day's rate to USD of every currency (USD included, at 1.0)."""
    return pd.DataFrame({
        "rate_date": world.config.day_date(day).isoformat(),
        "currency": CURRENCY_NAMES,
        "rate_to_usd": world.fx[world.state_day(day)],
    }, columns=FX_RATES.fieldNames())


def shipping_rates(world: World, day: int) -> pd.DataFrame | None:
    """The rate card version that takes effect on `day`, in long format (None on other days)."""
    card = next((c for c in world.rate_cards if c.effective_day == day), None)
    return None if card is None else _rate_card_rows(card, world.config.day_date(day))


def _rate_card_rows(card: RateCard, effective: date) -> pd.DataFrame:
    carrier, service, zone, brk = (a.ravel() for a in np.indices(card.base.shape))
    return pd.DataFrame({
        "carrier": np.asarray(CARRIERS)[carrier],
        "service_level": np.asarray(SERVICE_LEVELS)[service],
        "zone": zone + 1,
        "weight_break_kg": np.asarray(WEIGHT_BREAKS_KG)[brk],
        "base_rate": card.base.ravel(),
        "per_kg_over": card.per_kg_over[carrier, service],
        "volumetric_divisor": np.asarray(VOLUMETRIC_DIVISOR)[carrier],
        "fuel_surcharge_pct": card.fuel_pct[carrier],
        "remote_surcharge": card.remote_surcharge[carrier],
        "currency": "USD",
        "effective_from": effective.isoformat(),
    }, columns=SHIPPING_RATES.fieldNames())


def shipping_zones(world: World, day: int) -> pd.DataFrame | None:
    """The zone chart, sent once on day 0."""
    if day != 0:
        return None
    return pd.DataFrame({
        "postal_prefix": zfill(world.zone_prefix, 3),
        "zone": world.zone_of_prefix,
        "is_remote": world.remote_prefix,
    }, columns=SHIPPING_ZONES.fieldNames())


def customers(world: World, day: int) -> pd.DataFrame:
    """Customer register: everyone signed up before day 0 on day 0, then the day's sign-ups."""
    rng = rng_for(world.config.seed, "customers_file", day)
    i = np.flatnonzero(world.signup_day < 0 if day == 0 else world.signup_day == day)
    return pd.DataFrame({
        "customer_id": world.customer_id[i],
        "postal_code": postal_messy(world.zip5[i], world.plus4[i], rng),
        "city": world.city[i],
        "region": world.region[i],
        "segment": np.asarray(SEGMENTS)[world.segment[i]],
        "signup_date": _dates(world, world.signup_day[i]),
    }, columns=CUSTOMERS.fieldNames())


BATCH_SOURCES = {
    "products": products,
    "suppliers": suppliers,
    "market_prices": market_prices,
    "fx_rates": fx_rates,
    "shipping_rates": shipping_rates,
    "shipping_zones": shipping_zones,
    "customers": customers,
}
