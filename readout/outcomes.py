"""The outcome join of the outcome stream: pricing decisions and the behaviour events that name them (by
decision_id), turned into increments of views and add-to-carts per decision for the bandit.

The business rule is the readout's (`spark_jobs.readout.decision_outcomes`): a pricing decision is one
product view at its price; it led to an add-to-cart when any clickstream event naming its decision_id is
an `add_to_cart`. Streams deliver at least once and out of order, so the join keeps, per decision id,
what it has counted: a duplicated decision or event adds nothing, an add-to-cart arriving after its
decision was counted (late) adds the add-to-cart then, and an event arriving before its decision waits
for it. Decisions and waiting events older than `ttl` (by their own time) are forgotten. Pure Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

ADD_TO_CART = "add_to_cart"
OUTCOME_COLUMNS = ("decision_id", "sku", "price_usd", "views", "add_to_carts")
DEFAULT_TTL = timedelta(days=2)


@dataclass
class OutcomeJoin:
    """Decisions and events in, increments out (`drain`)."""

    ttl: timedelta = DEFAULT_TTL
    _decisions: dict[str, tuple[str, float, datetime]] = field(default_factory=dict)  # id -> sku, price, time
    _viewed: set[str] = field(default_factory=set)  # decision ids whose view was counted
    _carted: dict[str, datetime] = field(default_factory=dict)  # decision ids with an add-to-cart seen -> time
    _cart_counted: set[str] = field(default_factory=set)

    def add_decisions(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Pricing decision records (the decision log's fields: decision_id, event_time, endpoint, sku,
        price_usd); other endpoints are ignored."""
        for r in records:
            if r.get("endpoint") == "pricing" and r.get("decision_id") and r.get("price_usd") is not None:
                self._decisions.setdefault(r["decision_id"], (r["sku"], float(r["price_usd"]),
                                                              _instant(r["event_time"])))

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Clickstream events (event_type, decision_id, event_time); those naming no decision are ignored."""
        for e in events:
            if e.get("event_type") == ADD_TO_CART and e.get("decision_id"):
                self._carted.setdefault(e["decision_id"], _instant(e["event_time"]))

    def drain(self, now: datetime) -> pd.DataFrame:
        """What was not counted yet: one row per decision with something new (`OUTCOME_COLUMNS`; views 1 the
        first time, add_to_carts 1 once its add-to-cart is known), then forget what is older than `ttl`."""
        rows = []
        for decision_id, (sku, price, _) in self._decisions.items():
            view = decision_id not in self._viewed
            cart = decision_id in self._carted and decision_id not in self._cart_counted
            if view or cart:
                rows.append((decision_id, sku, price, int(view), int(cart)))
                self._viewed.add(decision_id)
                if cart:
                    self._cart_counted.add(decision_id)
        horizon = now - self.ttl
        for decision_id in [d for d, (_, _, t) in self._decisions.items() if t < horizon]:
            del self._decisions[decision_id]
            self._viewed.discard(decision_id)
            self._cart_counted.discard(decision_id)
        for decision_id in [d for d, t in self._carted.items() if t < horizon and d not in self._decisions]:
            del self._carted[decision_id]
        return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))

    @property
    def pending(self) -> int:
        """Add-to-carts waiting for their decision."""
        return sum(1 for d in self._carted if d not in self._decisions)


def _instant(value: Any) -> datetime:
    """An event's time as an aware datetime (naive: UTC); unreadable (a corrupt event), its arrival: now. It
    only decides when the join forgets."""
    try:
        instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
