"""Price books: every SKU's guardrail-clean price for one strategy, model version and feature snapshot.

A price depends on the SKU's features and the model, not on who asks, so the API decides all SKUs at
once (one vectorised optimizer call, tens of milliseconds for a thousand SKUs) the first time a
(strategy, model version, feature snapshot) is asked for, and answers requests by lookup. A new gold
version or a moved alias makes a new key, hence a new book: prices follow them without a restart.
The answers built from a book's prices are kept with it (`PriceBook.answer`), so they go with it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd

from pricing.guardrails import DEFAULT_GUARDRAILS, Decision, Guardrails
from pricing.optimizer import optimize
from pricing.rules import rule_based
from serving.online_features import FeatureSnapshot
from training.demand import DemandModel


@dataclass(frozen=True, slots=True)
class PricedSku:
    price_usd: float
    candidate_usd: float
    guardrails: tuple[str, ...]
    unit_cost_usd: float
    current_price_usd: float | None


def feature_frame(snapshot: FeatureSnapshot, skus: list[str] | None = None) -> pd.DataFrame:
    """The snapshot's latest pricing features (of `skus`, default all) with the list price (the last-resort
    reference price). Grain: one row per SKU with pricing features.
    """
    records = snapshot.pricing.records
    chosen = records.values() if skus is None else [records[sku] for sku in skus if sku in records]
    frame = pd.DataFrame.from_records(list(chosen))
    if frame.empty:
        return frame
    frame["list_price_usd"] = [p.list_price_usd if (p := snapshot.product(sku)) else np.nan for sku in frame["sku"]]
    return frame


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Every priced SKU of one (strategy, model version, feature snapshot), and the answers built from
    them, kept by the caller's key (an answer differs from a price only by who asks: the variant)."""

    prices: dict[str, PricedSku]
    _answers: dict = field(default_factory=dict)

    def get(self, sku: str) -> PricedSku | None:
        return self.prices.get(sku)

    def answer(self, key: Hashable, build: Callable[[], T]) -> T:
        """The answer kept under `key`, built by `build()` the first time (two threads may both build it:
        equal values, the last one kept)."""
        found = self._answers.get(key)
        if found is None:
            found = self._answers[key] = build()
        return found


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)


def decide_all(frame: pd.DataFrame, model: DemandModel | None, rails: Guardrails = DEFAULT_GUARDRAILS
               ) -> dict[str, PricedSku]:
    """Decisions for every SKU of `frame` with a unit cost: the optimizer's with `model`, else rule-based."""
    if frame.empty:
        return {}
    rows = frame.loc[frame["unit_cost_usd"].notna()].reset_index(drop=True)
    market = dict(unit_cost=_column(rows, "unit_cost_usd"), current_price=_column(rows, "last_price_usd"),
                  competitor_price=_column(rows, "competitor_min_price_usd"), map_price=_column(rows, "map_price_usd"),
                  rails=rails)
    decision: Decision = optimize(model.demand_fn(rows), **market) if model is not None else rule_based(**market)
    current = market["current_price"]
    return {
        sku: PricedSku(float(decision.prices[i]), float(decision.candidates[i]), tuple(str(r) for r in reasons),
                       float(market["unit_cost"][i]), None if np.isnan(current[i]) else float(current[i]))
        for i, (sku, reasons) in enumerate(zip(rows["sku"], decision.reasons(), strict=True))
    }


class PriceBooks:
    """Books by (strategy, model version, feature snapshot), built once each; the last few are kept."""

    KEEP = 4

    def __init__(self, rails: Guardrails = DEFAULT_GUARDRAILS):
        self.rails = rails
        self._books: dict[tuple, PriceBook] = {}
        self._lock = threading.Lock()

    def book(self, snapshot: FeatureSnapshot, model: DemandModel | None, model_version: str | None) -> PriceBook:
        key = (model_version if model is not None else "rule_based", snapshot.built_at)
        found = self._books.get(key)
        if found is not None:
            return found
        with self._lock:
            if key not in self._books:
                self._books[key] = PriceBook(decide_all(feature_frame(snapshot), model, self.rails))
                while len(self._books) > self.KEEP:
                    self._books.pop(next(iter(self._books)))
            return self._books[key]
