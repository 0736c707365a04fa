"""Configuration of a simulation: size, seed, the true model's parameters and the dirt rates.

Everything the simulator draws is a deterministic function of a `SimConfig`; the config is written to
`<truth>/model.json` so that `simulator.truth.load()` can rebuild the same world later.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from lakehouse.reference import CATEGORIES

# Per category of lakehouse.reference.CATEGORIES, in its order: (name, mean price elasticity, median list
# price USD, median weight g, median longest side cm, day of year of the seasonal peak). Elasticity means
# lie in [-3.5, -1.3].
CATEGORY_PARAMS: tuple[tuple[str, float, float, float, float, int], ...] = (
    ("electronics", -1.6, 180.0, 1200.0, 35.0, 340),
    ("home", -2.1, 60.0, 2500.0, 45.0, 300),
    ("kitchen", -2.4, 45.0, 1500.0, 35.0, 330),
    ("apparel", -3.0, 35.0, 400.0, 30.0, 250),
    ("beauty", -2.7, 22.0, 250.0, 15.0, 350),
    ("toys", -2.9, 30.0, 800.0, 30.0, 355),
    ("sports", -2.2, 70.0, 2000.0, 60.0, 150),
    ("books", -1.4, 18.0, 500.0, 24.0, 240),
    ("grocery", -3.4, 12.0, 900.0, 20.0, 330),
    ("garden", -1.9, 55.0, 4000.0, 70.0, 120),
)
if tuple(c[0] for c in CATEGORY_PARAMS) != CATEGORIES:
    raise ValueError("CATEGORY_PARAMS must list lakehouse.reference.CATEGORIES, in order")

# Starting rate to USD of each currency above; daily log-returns have sd FX_DAILY_SD.
FX_START: tuple[float, ...] = (1.0, 1.08, 1.27, 0.14, 0.73)
FX_DAILY_SD = 0.004

COMPETITORS: tuple[str, ...] = ("megamart", "shopdirect", "euroshop")
COMPETITOR_CURRENCY: tuple[str, ...] = ("USD", "USD", "EUR")
COMPETITOR_COVERAGE: tuple[float, ...] = (0.85, 0.65, 0.5)

# Per carrier of lakehouse.reference.CARRIERS, in its order.
CARRIER_SHARE: tuple[float, ...] = (0.5, 0.3, 0.2)
VOLUMETRIC_DIVISOR: tuple[int, ...] = (5000, 6000, 4000)
WEIGHT_BREAKS_KG: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)


@dataclass(frozen=True)
class ModelParams:
    """The true demand and shipping model; docs/simulator.md gives the formulas."""

    # Demand: views, then add-to-cart whose probability carries the price effects.
    views_per_sku_day: float = 6.0  # mean daily product views of a non-anchor SKU at scale 1
    popularity_sigma: float = 0.8  # lognormal spread of SKU popularity
    elasticity_sd: float = 0.25  # per-SKU noise around the category mean
    elasticity_max: float = -1.15  # every SKU stays elastic, so a profit-maximising price exists
    gamma: float = 0.8  # competitor effect: demand * (competitor_min_price / our_price) ** gamma
    cart_rate_range: tuple[float, float] = (0.10, 0.30)  # add-to-cart probability at reference prices
    cart_rate_cap: float = 0.95
    remove_rate: float = 0.10  # a cart line is removed before checkout
    checkout_rate: float = 0.80  # a session with cart lines reaches checkout
    pay_rate: float = 5.0 / 6.0  # a checkout is paid
    extra_quantity_mean: float = 0.25  # quantity = 1 + Poisson(extra_quantity_mean)
    # Seasonality of traffic: weekly multipliers Monday..Sunday, yearly cosine per category.
    weekly: tuple[float, ...] = (0.95, 0.92, 0.94, 0.98, 1.05, 1.12, 1.04)
    yearly_amplitude: float = 0.25
    # Anchors: high-traffic SKUs; their daily campaign intensity A spills over to the category.
    anchors_per_category: int = 3
    anchor_traffic: float = 15.0  # anchors' views relative to an average SKU
    anchor_campaign_sigma: float = 0.35  # A = lognormal(-sigma^2/2, sigma) per category and day
    anchor_spillover: float = 0.5  # other SKUs of the category get A ** spillover times the views
    # Our own prices: a daily price test on a share of SKUs, uniform multiplier around list.
    price_test_share: float = 0.6
    price_test_range: tuple[float, float] = (0.80, 1.15)
    list_change_rate: float = 0.003  # SKUs per day whose list price changes
    map_share: float = 0.1  # SKUs with a minimum advertised price
    launch_share: float = 0.08  # SKUs launched during the history (not in the day-0 snapshot)
    cost_change_rate: float = 0.03  # SKUs per day with a new supplier cost
    # Customers and sessions.
    customers_per_sku: float = 20.0  # initial customers per SKU at scale 1
    signup_rate: float = 0.003  # daily sign-ups as a share of the initial customers
    views_per_session: float = 2.5
    logged_in_share: float = 0.6  # sessions whose events carry customer_id before checkout
    eur_order_share: float = 0.05  # orders through the EU storefront, priced in EUR
    coupon_share: float = 0.05  # orders with a coupon code once the column exists
    # Shipping.
    express_share: float = 0.15
    shipping_noise_sigma: float = 0.05  # invoice = rate card * lognormal(0, sigma)
    anomaly_rate: float = 0.02  # overcharged shipments
    anomaly_range: tuple[float, float] = (1.3, 2.0)
    shipping_markup: float = 0.10  # charged to the customer = rate card * (1 + markup)
    free_shipping_threshold: float = 75.0  # USD subtotal above which standard shipping is free
    # Live shoppers at checkout (simulator.checkout), facing the API's shipping charge c (USD):
    shipping_fee_sensitivity: float = 0.05  # P(checkout | cart) = purchase_given_cart * exp(-0.05 c)
    top_up_max: float = 0.6  # P(grow the basket to free shipping) = 0.6 * max(0, 1 - gap / reach) ...
    top_up_reach_usd: float = 30.0  # ... for a basket `gap` USD short of the free-shipping threshold
    rate_increase: float = 0.059  # general rate increase at the mid-history rate change
    fuel_increase_pct: float = 1.5


@dataclass(frozen=True)
class DirtRates:
    """Rates of the defects injected into the landing files; the truth records exact counts."""

    duplicate: float = 0.01  # rows sent twice
    duplicate_later_share: float = 0.5  # of event duplicates, re-sent 1..3 days later
    late: float = 0.02  # events landing 1..3 days after their event time
    null: float = 0.005  # rows with one non-key value nulled
    out_of_range: float = 0.002  # negative quantity or price, zero weight
    corrupt: float = 0.0005  # truncated JSON lines, CSV lines missing two fields
    color_from_day: int = 45  # products files gain a `color` column from this day
    coupon_code_from_day: int = 60  # transactions gain a `coupon_code` field from this day
    max_delay_days: int = 3


@dataclass(frozen=True)
class SimConfig:
    """Size and seed of one simulation; `scale` multiplies traffic and customers, not the catalogue."""

    seed: int = 7
    skus: int = 1000
    days: int = 90
    start_date: date = date(2026, 8, 1)
    scale: float = 1.0
    model: ModelParams = field(default_factory=ModelParams)
    dirt: DirtRates = field(default_factory=DirtRates)

    def __post_init__(self) -> None:
        if self.skus < 10 * len(CATEGORIES) or self.days < 1 or self.scale <= 0:
            raise ValueError(f"need skus >= {10 * len(CATEGORIES)}, days >= 1 and scale > 0, got {self}")

    def day_date(self, day: int) -> date:
        return self.start_date + timedelta(days=day)

    def day_of(self, when: date) -> int:
        return (when - self.start_date).days

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["start_date"] = self.start_date.isoformat()
        return out

    @classmethod
    def from_json(cls, data: dict) -> SimConfig:
        def tuples(d: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        return cls(
            seed=data["seed"], skus=data["skus"], days=data["days"],
            start_date=date.fromisoformat(data["start_date"]), scale=data["scale"],
            model=ModelParams(**tuples(data["model"])), dirt=DirtRates(**tuples(data["dirt"])),
        )


def rng_for(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """An independent random stream per (seed, purpose, day...): any day can be regenerated alone."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode()), *keys])
