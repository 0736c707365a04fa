"""Price books: every SKU's guardrail-clean price for one strategy, model version and feature snapshot.

A price depends on the SKU's features and the model, not on who asks, so the API decides all SKUs at
once (one vectorised optimizer call, tens of milliseconds for a thousand SKUs) the first time a
(strategy, model version, feature snapshot) is asked for, and answers requests by lookup. A new gold
version or a moved alias makes a new key, hence a new book: prices follow them without a restart.
The answers built from a book's prices are kept with it (`PriceBook.answer`), so they go with it too.

`LivePriceBook` lays live prices over the daily book (`LiveBook`, one per daily book key): when the
live features poll reports changed SKUs, only those are decided again (`pricing.live.live_decide`),
within the live guardrails, whose per-SKU history (`pricing.live.LiveGuardState`) lives in this
process. A request still looks its price up: a live entry, else the daily book's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
import pandas as pd

from pricing.guardrails import DEFAULT_GUARDRAILS, Decision, Guardrails, Reason, decode_reasons
from pricing.live import LiveGuardState, live_decide
from pricing.optimizer import optimize
from pricing.policy import LIVE_POLICY, LivePolicy
from pricing.rules import rule_based
from serving.online_features import FeatureSnapshot, LiveSnapshot
from training.demand import DemandModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PricedSku:
    price_usd: float
    candidate_usd: float
    guardrails: tuple[str, ...]
    unit_cost_usd: float
    current_price_usd: float | None
    reason_code: str | None = None  # the live move's reason (pricing.live.LiveReason); None: the daily price
    live_features_as_of: datetime | None = None  # the live features a live price was decided on


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


@dataclass
class LiveBook:
    """Live prices over one daily book (its key: strategy or model version, feature snapshot). `entries`
    holds the SKUs decided live, each with the answers built from it (they go when it is replaced)."""

    key: tuple
    daily: PriceBook
    frame: pd.DataFrame  # the daily features of the priced SKUs, indexed by SKU
    model: DemandModel | None
    entries: dict[str, tuple[PricedSku, dict]] = field(default_factory=dict)

    def get(self, sku: str) -> PricedSku | None:
        entry = self.entries.get(sku)
        return entry[0] if entry is not None else self.daily.get(sku)

    def answer(self, sku: str, key: Hashable, build: Callable[[], T]) -> T:
        """The answer for `sku` kept under `key`: with its live entry, else with the daily book."""
        entry = self.entries.get(sku)
        if entry is None:
            return self.daily.answer(("live", sku, key), build)
        found = entry[1].get(key)
        if found is None:
            found = entry[1][key] = build()
        return found


class LivePriceBook:
    """Live prices over the daily books of `books` (see the module docstring).

    `book(...)` is the request path: the current LiveBook when its daily book is the one asked for, else a
    new one, with every SKU that has live features or a live history decided once. `on_live_change` (a
    `LiveFeatureStore` listener) decides the changed SKUs of the current LiveBook again. The guardrail
    history is per SKU, across books; `decided` counts SKU decisions (for tests and logs)."""

    def __init__(self, books: PriceBooks, live: Callable[[], LiveSnapshot], policy: LivePolicy = LIVE_POLICY,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.books, self.live, self.policy, self.now = books, live, policy, now
        self.state = LiveGuardState()
        self.decided = 0
        self._current: LiveBook | None = None
        self._lock = threading.Lock()

    def book(self, snapshot: FeatureSnapshot, model: DemandModel | None, model_version: str | None) -> LiveBook:
        key = (model_version if model is not None else "rule_based", snapshot.built_at)
        current = self._current
        if current is not None and current.key == key:
            return current
        daily = self.books.book(snapshot, model, model_version)
        with self._lock:
            current = self._current
            if current is None or current.key != key:
                frame = feature_frame(snapshot)
                frame = (frame.loc[frame["unit_cost_usd"].notna()].set_index("sku", drop=False) if not frame.empty
                         else frame)
                fresh = LiveBook(key, daily, frame, model)
                live = self.live()
                self._decide(fresh, live, set(live.features) | (set(current.entries) if current else set()))
                self._current = current = fresh
            return current

    def on_live_change(self, live: LiveSnapshot, changed: frozenset[str]) -> None:
        """Decide the changed SKUs of the current LiveBook again (none yet: the first request builds it)."""
        if not changed:
            return
        with self._lock:
            if self._current is not None:
                self._decide(self._current, live, changed)

    def _decide(self, book: LiveBook, live: LiveSnapshot, skus) -> None:
        """Decide `skus` (those the daily book prices) live, record the changes, replace their entries."""
        if book.frame.empty:
            return
        skus = sorted(sku for sku in skus if sku in book.frame.index and book.daily.get(sku) is not None)
        if not skus:
            return
        now = self.now()
        features = [live.get(sku) for sku in skus]
        daily = [book.daily.get(sku) for sku in skus]
        served = np.array([book.get(sku).price_usd for sku in skus])
        first, changes = self.state.inputs(skus, served, now)
        decision = live_decide(
            book.frame.loc[skus].reset_index(drop=True), book.model.demand_fn if book.model is not None else None,
            [f.competitor_min_usd if f and f.competitor_min_usd is not None else np.nan for f in features],
            [f.demand_index_60m if f and f.demand_index_60m is not None else np.nan for f in features],
            [d.price_usd for d in daily], served, first, changes, self.books.rails, self.policy)
        self.state.record(skus, served, decision.prices, now)
        for i, sku in enumerate(skus):
            as_of = features[i].as_of if features[i] else None
            if decision.held[i]:
                kept = book.get(sku)
                entry = replace(kept, guardrails=tuple(dict.fromkeys(
                    (*kept.guardrails, str(Reason.LIVE_CHANGE_LIMIT)))))
            elif decision.reasons[i] is None and round(decision.prices[i], 2) == round(daily[i].price_usd, 2):
                entry = replace(daily[i], live_features_as_of=as_of)
            else:
                entry = replace(daily[i], price_usd=float(decision.prices[i]),
                                candidate_usd=float(decision.candidates[i]),
                                guardrails=tuple(str(r) for r in decode_reasons(decision.reason_mask[i])),
                                reason_code=None if decision.reasons[i] is None else str(decision.reasons[i]),
                                live_features_as_of=as_of)
            book.entries[sku] = (entry, {})
        self.decided += len(skus)
        log.debug("live prices decided", extra={"skus": len(skus), "book": str(book.key)})
