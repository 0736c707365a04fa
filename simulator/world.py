"""The simulated world: catalogue, suppliers, customers, prices, costs, competitors, fx, rate cards.

`World(config)` draws every entity and every day-by-SKU state (list and own prices, supplier costs,
competitor quotes, fx) deterministically from the seed. It is the single source of the ground truth:
the landing files are renderings of it and `simulator.truth` evaluates its formulas.
Day-indexed state past the history's last day holds the last day's value.
"""

from __future__ import annotations

from datetime import date
from functools import cached_property

import numpy as np

from lakehouse.reference import CURRENCIES
from simulator.config import (
    CATEGORY_PARAMS,
    COMPETITOR_COVERAGE,
    COMPETITOR_CURRENCY,
    FX_DAILY_SD,
    FX_START,
    SimConfig,
    rng_for,
)
from simulator.formats import sku_canonical
from simulator.shipping import VALID_PREFIXES, build_rate_cards, zone_chart

SEGMENT_SESSION_WEIGHT = np.array([1.0, 2.0, 4.0])
# City and region by the first digit of the ZIP code (a coarse but consistent geography).
REGIONS = ("MA", "NY", "VA", "FL", "OH", "MN", "IL", "TX", "CO", "CA")
CITIES = (("Boston", "Worcester"), ("New York", "Albany"), ("Richmond", "Baltimore"),
          ("Miami", "Atlanta"), ("Columbus", "Detroit"), ("Minneapolis", "Madison"),
          ("Chicago", "St. Louis"), ("Dallas", "Houston"), ("Denver", "Phoenix"),
          ("Los Angeles", "Seattle"))
BRAND_STEMS = ("Acme", "Nordic", "Vista", "Orion", "Pioneer", "Summit", "Lumen", "Cedar", "Atlas",
               "Harbor", "Zenith", "Willow", "Apex", "Falcon", "Juniper", "Maple", "Quartz", "Sable")
PRODUCT_WORDS = ("Classic", "Pro", "Lite", "Max", "Eco", "Plus", "Mini", "Ultra", "Prime", "Flex")
COLORS = ("black", "white", "red", "blue", "green", "grey", "beige", "navy")
SUPPLIER_CURRENCY_P = (0.55, 0.2, 0.1, 0.15, 0.0)  # suppliers bill in USD, EUR, GBP, CNY


def round_price(values: np.ndarray) -> np.ndarray:
    """Retail prices end in .99 (at least 0.99)."""
    return np.maximum(0.99, np.round(values) - 0.01)


class World:
    """Every entity and day-by-SKU state of one simulation. Arrays are indexed [day, sku] or [sku]."""

    def __init__(self, config: SimConfig):
        self.config, self.params = config, config.model
        self.n_skus, self.n_days = config.skus, config.days
        self._catalogue()
        self._prices()
        self._suppliers()
        self._market()
        self._customers()
        self.rate_cards = build_rate_cards(rng_for(config.seed, "rates"), self.params, config.days // 2)
        self.zone_prefix, self.zone_of_prefix, self.remote_prefix = zone_chart()

    # --- catalogue -------------------------------------------------------------------------
    def _catalogue(self) -> None:
        rng, p, n = rng_for(self.config.seed, "catalogue"), self.params, self.n_skus
        cats = np.array(CATEGORY_PARAMS, dtype=object)
        self.sku_number = np.sort(rng.choice(np.arange(1, 1_000_000), size=n, replace=False))
        self.sku_id = sku_canonical(self.sku_number)
        self.category = rng.permutation(np.arange(n) % len(CATEGORY_PARAMS))
        self.elasticity = np.minimum(
            p.elasticity_max, cats[self.category, 1].astype(float) + rng.normal(0, p.elasticity_sd, n))
        self.cart_rate0 = rng.uniform(*p.cart_rate_range, n)
        self.ref_price = round_price(cats[self.category, 2].astype(float) * rng.lognormal(0, 0.5, n))
        self.weight_g = np.maximum(20, np.round(cats[self.category, 3].astype(float)
                                                * rng.lognormal(0, 0.6, n))).astype(np.int64)
        longest = cats[self.category, 4].astype(float) * rng.lognormal(0, 0.35, n)
        self.dims_cm = np.round(longest[:, None] * np.column_stack(
            [np.ones(n), rng.uniform(0.4, 0.9, n), rng.uniform(0.15, 0.6, n)]), 1).clip(min=1.0)
        # Launches during the history get a launch day >= 1; the rest launched before day 0.
        launching = rng.random(n) < p.launch_share
        self.launch_day = np.where(launching, rng.integers(1, max(2, self.n_days), n),
                                   -rng.integers(30, 1500, n))
        # Anchors: the most popular already-launched SKUs of each category.
        popularity = rng.lognormal(-p.popularity_sigma**2 / 2, p.popularity_sigma, n)
        self.is_anchor = np.zeros(n, dtype=bool)
        for c in range(len(CATEGORY_PARAMS)):
            members = np.flatnonzero((self.category == c) & ~launching)
            top = members[np.argsort(-popularity[members], kind="stable")[: p.anchors_per_category]]
            self.is_anchor[top] = True
        self.popularity = np.where(self.is_anchor, p.anchor_traffic, popularity)
        stems = np.array(BRAND_STEMS)
        self.brand = stems[(self.category * 5 + rng.integers(0, 6, n)) % len(stems)]
        words = np.array(PRODUCT_WORDS)[rng.integers(0, len(PRODUCT_WORDS), n)]
        nouns = np.array([c.capitalize() for c in cats[:, 0]])[self.category]
        model_no = rng.integers(100, 1000, n).astype(str)
        self.product_name = np.strings.add(np.strings.add(np.strings.add(
            np.strings.add(np.strings.add(self.brand, " "), words), " "), nouns), np.strings.add(" ", model_no))
        self.color = np.array(COLORS)[rng.integers(0, len(COLORS), n)]
        # How the catalogue system stores each SKU's measures: weight in g/kg/lb, dims in cm/in.
        self.weight_unit = rng.choice(np.array(["g", "kg", "lb"]), n, p=[0.4, 0.4, 0.2])
        self.dim_unit = rng.choice(np.array(["cm", "in"]), n, p=[0.75, 0.25])
        self.eur_listed = rng.random(n) < 0.03

    # --- own prices ------------------------------------------------------------------------
    def _prices(self) -> None:
        rng, p, n, days = rng_for(self.config.seed, "list_prices"), self.params, self.n_skus, self.n_days
        change = rng.random((days, n)) < p.list_change_rate
        change[0] = False
        step = np.where(change, rng.uniform(0.92, 1.10, (days, n)), 1.0)
        self.list_changed = change
        self.list_price = round_price(self.ref_price[None, :] * np.cumprod(step, axis=0))
        has_map = rng.random(n) < p.map_share
        map_ratio = rng.uniform(0.85, 0.95, n)
        self.map_price = np.where(has_map[None, :], np.round(self.list_price * map_ratio, 2), np.nan)

    def state_day(self, day: int) -> int:
        """Index into day-by-SKU state: days past the history hold the last day's state."""
        return min(max(day, 0), self.n_days - 1)

    def is_active(self, day: int) -> np.ndarray:
        return self.launch_day <= day

    def own_price(self, day: int) -> np.ndarray:
        """Our USD price of every SKU on `day`: list price, or a price test around it, never below MAP."""
        rng, p = rng_for(self.config.seed, "price_test", day), self.params
        in_test = rng.random(self.n_skus) < p.price_test_share
        mult = np.where(in_test, rng.uniform(*p.price_test_range, self.n_skus), 1.0)
        d = self.state_day(day)
        price = np.round(self.list_price[d] * mult, 2)
        return np.fmax(price, self.map_price[d])

    # --- suppliers and fx -------------------------------------------------------------------
    def _suppliers(self) -> None:
        rng, p, n, days = rng_for(self.config.seed, "suppliers"), self.params, self.n_skus, self.n_days
        n_sup = max(10, n // 25)
        self.supplier_id = np.strings.add("SUP-", np.strings.zfill(np.arange(1, n_sup + 1).astype(str), 4))
        self.supplier_name = np.strings.add(np.array(BRAND_STEMS)[np.arange(n_sup) % len(BRAND_STEMS)],
                                            np.array([" Trading", " Supply Co", " Industries"])[
                                                np.arange(n_sup) % 3])
        self.supplier_currency = rng.choice(len(CURRENCIES), n_sup, p=SUPPLIER_CURRENCY_P)
        self.supplier_of = rng.integers(0, n_sup, n)
        self.lead_time_days = rng.integers(3, 46, n)
        steps = rng.normal(0, FX_DAILY_SD, (days, len(CURRENCIES)))
        steps[0] = 0.0
        steps[:, 0] = 0.0  # USD is the base
        self.fx = np.round(np.asarray(FX_START)[None, :] * np.exp(np.cumsum(steps, axis=0)), 6)
        currency = self.supplier_currency[self.supplier_of]
        cost0 = self.ref_price * rng.uniform(0.45, 0.70, n) / self.fx[0, currency]
        change = rng.random((days, n)) < p.cost_change_rate
        change[0] = False
        self.cost_changed = change
        self.cost_local = np.round(cost0[None, :] * np.cumprod(
            np.where(change, rng.uniform(0.95, 1.08, (days, n)), 1.0), axis=0), 2)

    def fx_rate(self, day: int, currency: np.ndarray) -> np.ndarray:
        return self.fx[self.state_day(day), currency]

    def unit_cost_usd(self, day: int) -> np.ndarray:
        """True landed unit cost in USD of every SKU on `day` (supplier cost at that day's fx)."""
        d = self.state_day(day)
        return self.cost_local[d] * self.fx[d, self.supplier_currency[self.supplier_of]]

    # --- competitors --------------------------------------------------------------------------
    def _market(self) -> None:
        rng, n, days = rng_for(self.config.seed, "market"), self.n_skus, self.n_days
        k = len(COMPETITOR_COVERAGE)
        self.covered = rng.random((n, k)) < np.asarray(COMPETITOR_COVERAGE)
        level = rng.uniform(0.88, 1.12, (n, k))
        shocks = rng.normal(0, 0.03, (days, n, k))
        noise = np.empty_like(shocks)
        noise[0] = shocks[0] / np.sqrt(1 - 0.9**2)  # start in the AR(1)'s stationary law
        for d in range(1, days):
            noise[d] = 0.9 * noise[d - 1] + shocks[d]
        sale = np.where(rng.random((days, n, k)) < 0.04, 0.85, 1.0)
        usd = self.ref_price[None, :, None] * level[None] * np.exp(noise) * sale
        cur = np.array([CURRENCIES.index(c) for c in COMPETITOR_CURRENCY])
        self.competitor_currency = cur
        self.competitor_quote = np.where(self.covered[None], np.round(usd / self.fx[:, None, cur], 2), np.nan)

    def competitor_min_usd(self, day: int, quote: np.ndarray | None = None) -> np.ndarray:
        """Lowest competitor price in USD of every SKU on `day`; NaN where no competitor sells it.

        `quote` [sku, competitor] (competitors' currencies) replaces the day's quotes, e.g. shocked ones
        (`simulator.shocks.market_state`); the day's exchange rates convert them."""
        d = self.state_day(day)
        quote = self.competitor_quote[d] if quote is None else quote
        usd = quote * self.fx[d, self.competitor_currency][None, :]
        out = np.full(self.n_skus, np.nan)
        any_cover = self.covered.any(axis=1)
        out[any_cover] = np.nanmin(usd[any_cover], axis=1)
        return out

    # --- customers -------------------------------------------------------------------------
    def _customers(self) -> None:
        rng, p, days = rng_for(self.config.seed, "customers"), self.params, self.n_days
        initial = max(100, round(p.customers_per_sku * self.n_skus * self.config.scale))
        daily = rng.poisson(initial * p.signup_rate, days)
        daily[0] = 0
        signup = np.concatenate([-rng.integers(1, 1000, initial), np.repeat(np.arange(days), daily)])
        total = len(signup)
        self.customer_id = np.strings.add("C-", np.strings.zfill(np.arange(1, total + 1).astype(str), 7))
        self.signup_day = signup
        self.segment = np.where(signup >= 0, 0, rng.choice(3, total, p=[0.15, 0.6, 0.25]))
        _, _, remote = zone_chart()
        weight = np.where(remote, 0.2, 1.0)  # few customers live in remote areas
        prefix = rng.choice(VALID_PREFIXES, total, p=weight / weight.sum())
        self.zip5 = np.strings.zfill((prefix * 100 + rng.integers(0, 100, total)).astype(str), 5)
        self.zip_prefix = prefix
        self.plus4 = rng.integers(1, 10000, total)
        first_digit = prefix // 100
        self.region = np.array(REGIONS)[first_digit]
        self.city = np.array(CITIES)[first_digit, rng.integers(0, 2, total)]

    def sku_index(self, sku) -> np.ndarray:
        """Indexes of canonical SKU ids (`SKU-000123`); KeyError naming unknown ones."""
        sku = np.asarray(sku).astype(str)
        idx = np.searchsorted(self.sku_id, sku)  # ids are zero-padded, hence sorted
        found = (idx < self.n_skus) & (self.sku_id[np.minimum(idx, self.n_skus - 1)] == sku)
        if not np.all(found):
            raise KeyError(f"unknown SKUs: {np.unique(sku[~found])[:5].tolist()}")
        return idx

    def zone_of(self, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(prefix) - VALID_PREFIXES[0]
        return self.zone_of_prefix[idx], self.remote_prefix[idx]

    # --- demand ----------------------------------------------------------------------------
    @cached_property
    def _peak_phase(self) -> np.ndarray:
        return 2 * np.pi * np.array([c[5] for c in CATEGORY_PARAMS]) / 365.25

    def season(self, when: date) -> np.ndarray:
        """Traffic multiplier of every category on a date: weekly profile times yearly cosine."""
        p = self.params
        yearly = 1 + p.yearly_amplitude * np.cos(2 * np.pi * when.timetuple().tm_yday / 365.25 - self._peak_phase)
        return p.weekly[when.weekday()] * yearly

    def campaign(self, day: int) -> np.ndarray:
        """Anchor campaign intensity A of every category on `day` (lognormal, mean 1)."""
        sigma = self.params.anchor_campaign_sigma
        return rng_for(self.config.seed, "campaign", day).lognormal(-sigma**2 / 2, sigma, len(CATEGORY_PARAMS))

    def expected_views(self, day: int) -> np.ndarray:
        """Expected product views of every SKU on `day`: popularity x season x anchor effect."""
        p = self.params
        a = self.campaign(day)[self.category]
        anchor_effect = np.where(self.is_anchor, a, a**p.anchor_spillover)
        season = self.season(self.config.day_date(day))[self.category]
        return (self.config.scale * p.views_per_sku_day * self.popularity * season * anchor_effect
                * self.is_active(day))

    def cart_probability(self, sku: np.ndarray, price: np.ndarray, competitor_min: np.ndarray,
                         elasticity: np.ndarray | None = None) -> np.ndarray:
        """P(add to cart | view) = cart_rate0 * (p/ref)^(e+gamma) * (cmin/p)^gamma, capped.

        A SKU no competitor sells uses its reference price as cmin, so its own-price elasticity
        is the same e at any competitor price: d log demand / d log p = e (competitor price fixed).
        `elasticity` (broadcast with `sku`) replaces the SKUs' own e: a market whose elasticities drift.
        """
        p, sku = self.params, np.asarray(sku)
        price = np.asarray(price, dtype=float)
        ref = self.ref_price[sku]
        cmin = np.where(np.isnan(competitor_min), ref, competitor_min)
        e = self.elasticity[sku] if elasticity is None else np.asarray(elasticity, dtype=float)
        prob = (self.cart_rate0[sku] * (price / ref) ** (e + p.gamma)
                * (cmin / price) ** p.gamma)
        return np.minimum(p.cart_rate_cap, prob)

    @property
    def purchase_given_cart(self) -> float:
        p = self.params
        return (1 - p.remove_rate) * p.checkout_rate * p.pay_rate
