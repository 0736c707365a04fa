"""Live repricing in the API: live features from the live tables, the changed SKUs of a poll, the live book
re-deciding only those, and the answers naming the live features' as-of time and the move's reason."""

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pyarrow as pa

from lakehouse.delta_reader import DeltaReader
from pricing.policy import LivePolicy
from serving.experiments import Assignment
from serving.online_features import (
    LIVE_ACTIVITY_TABLE,
    LIVE_COMPETITOR_TABLE,
    PRICING_TABLE,
    LiveFeatures,
    LiveFeatureStore,
    LiveSnapshot,
    build_snapshot,
    changed_skus,
    current_window_end,
    latest_per_sku,
    live_features,
)
from serving.pricebook import LivePriceBook, PriceBooks
from serving.routes import price_sku

NOW = datetime(2026, 10, 2, 12, 30, 20, tzinfo=UTC)
END = datetime(2026, 10, 2, 12, 31, tzinfo=UTC)
POLICY = LivePolicy(competitor_move_pct=3, demand_surge_index=1.5, demand_slump_index=0.5, max_changes_per_hour=4,
                    max_daily_move_pct=15)
TS = pa.timestamp("us", tz="UTC")
ACTIVITY_SCHEMA = pa.schema([("sku", pa.string()), ("window_minutes", pa.int32()), ("window_end", TS),
                             ("views", pa.int64()), ("add_to_carts", pa.int64()), ("demand_index", pa.float64())])
COMPETITOR_SCHEMA = pa.schema([("sku", pa.string()), ("price_usd", pa.float64()), ("observed_at", TS)])


def activity(*rows) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(ACTIVITY_SCHEMA.names, r, strict=True)) for r in rows],
                                schema=ACTIVITY_SCHEMA)


def competitors(*rows) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(COMPETITOR_SCHEMA.names, r, strict=True)) for r in rows],
                                schema=COMPETITOR_SCHEMA)


def test_the_current_window_ends_at_the_next_whole_minute():
    assert current_window_end(NOW) == END
    assert current_window_end(datetime(2026, 10, 2, 12, 30, tzinfo=UTC)) == END


def test_live_features_take_the_current_windows_and_the_competitor_minimum():
    seen = NOW - timedelta(minutes=5)
    table = activity(("SKU-000001", 15, END, 12, 3, 2.5), ("SKU-000001", 60, END, 40, 6, 1.8),
                     ("SKU-000001", 60, END - timedelta(minutes=1), 39, 6, 1.7),  # the previous window: not used
                     ("SKU-000002", 60, END, 5, 0, None), ("SKU-000003", 15, END - timedelta(minutes=3), 9, 1, 3.0))
    prices = competitors(("SKU-000001", 18.0, seen), ("SKU-000001", 17.5, seen - timedelta(hours=1)),
                         ("SKU-000004", 9.0, seen), ("SKU-000004", None, NOW))

    assert live_features(table, prices, NOW) == {
        "SKU-000001": LiveFeatures("SKU-000001", END, 17.5, 12, 3, 40, 6, 1.8),
        "SKU-000002": LiveFeatures("SKU-000002", END, None, 0, 0, 5, 0, None),
        "SKU-000004": LiveFeatures("SKU-000004", seen, 9.0, 0, 0, 0, 0, None),
    }
    assert live_features(None, None, NOW) == {}


def test_a_change_is_judged_on_the_values_not_the_as_of_time():
    before = {"A": LiveFeatures("A", END, 10.0, 1, 0, 1, 0, 1.0), "B": LiveFeatures("B", END, 5.0, 0, 0, 0, 0, None),
              "C": LiveFeatures("C", END, 7.0, 0, 0, 0, 0, None)}
    after = {"A": LiveFeatures("A", END + timedelta(minutes=1), 10.0, 1, 0, 1, 0, 1.0),
             "B": LiveFeatures("B", END, 5.5, 0, 0, 0, 0, None), "D": LiveFeatures("D", END, 1.0, 0, 0, 0, 0, None)}

    assert changed_skus(before, after) == {"B", "C", "D"}


class TableReader(DeltaReader):
    """Answers from in-memory tables by name; counts reads."""

    def __init__(self, tables: dict[str, tuple[int, pa.Table]]):
        super().__init__()
        self.tables, self.reads = tables, []

    def versions(self, locations):
        return {name: self.tables[name][0] if name in self.tables else None for name in locations}

    def read(self, location, version, columns=None):
        name = next(n for n in (LIVE_ACTIVITY_TABLE, LIVE_COMPETITOR_TABLE) if location.endswith(n.split(".")[1]))
        self.reads.append(name)
        return self.tables[name][1]


def test_a_poll_reports_only_the_changed_skus_and_rereads_only_a_moved_table(settings):
    reader = TableReader({LIVE_COMPETITOR_TABLE: (3, competitors(("SKU-000001", 18.0, NOW), ("SKU-000002", 9.0, NOW)))})
    store = LiveFeatureStore(settings, reader, poll_s=1, now=lambda: NOW)
    heard = []
    store.subscribe(lambda snapshot, changed: heard.append(changed))

    assert store.poll() == {"SKU-000001", "SKU-000002"} and store.snapshot.available
    assert store.poll() == frozenset()
    reader.tables[LIVE_COMPETITOR_TABLE] = (4, competitors(("SKU-000001", 18.0, NOW), ("SKU-000002", 8.0, NOW)))
    assert store.poll() == {"SKU-000002"}
    assert heard == [{"SKU-000001", "SKU-000002"}, frozenset(), {"SKU-000002"}]
    assert reader.reads == [LIVE_COMPETITOR_TABLE, LIVE_COMPETITOR_TABLE]
    assert store.snapshot.versions == {LIVE_ACTIVITY_TABLE: None, LIVE_COMPETITOR_TABLE: 4}


def test_without_live_tables_there_are_no_live_features(settings):
    store = LiveFeatureStore(settings, TableReader({}), poll_s=1, now=lambda: NOW)

    assert store.poll() == frozenset()
    assert not store.snapshot.available and store.snapshot.features == {}


# --- the live book ---------------------------------------------------------------------------------------

PRICING_SCHEMA = pa.schema([("sku", pa.string()), ("as_of_date", pa.date32()), ("unit_cost_usd", pa.float64()),
                            ("last_price_usd", pa.float64()), ("competitor_min_price_usd", pa.float64()),
                            ("map_price_usd", pa.float64())])


def snapshot(skus: int = 5):
    rows = [{"sku": f"SKU-{i:06d}", "as_of_date": date(2026, 10, 1), "unit_cost_usd": 10.0, "last_price_usd": 20.0,
             "competitor_min_price_usd": 20.0, "map_price_usd": None} for i in range(1, skus + 1)]
    table = latest_per_sku(pa.Table.from_pylist(rows, schema=PRICING_SCHEMA))
    return build_snapshot({PRICING_TABLE: table}, {PRICING_TABLE: 0}, date(2026, 10, 2), NOW)


def live(*features: LiveFeatures) -> LiveSnapshot:
    return LiveSnapshot({f.sku: f for f in features}, {LIVE_ACTIVITY_TABLE: 1, LIVE_COMPETITOR_TABLE: 1}, NOW)


def features(sku: str, competitor: float | None = None, index: float | None = None, as_of: datetime = END):
    return LiveFeatures(sku, as_of, competitor, 0, 0, 0, 0, index)


def test_the_live_book_redecides_only_the_changed_skus():
    current = [live(features("SKU-000001", 20.1), features("SKU-000002", 15.0))]
    books = LivePriceBook(PriceBooks(), lambda: current[0], POLICY, now=lambda: NOW)
    book = books.book(snapshot(), None, None)  # rule-based prices
    assert books.decided == 2  # the SKUs with live features
    daily = book.daily.get("SKU-000003")
    untouched = book.entries["SKU-000001"]
    assert (untouched[0].price_usd, untouched[0].reason_code, untouched[0].live_features_as_of) == (
        daily.price_usd, None, END)
    moved = book.get("SKU-000002")
    assert (moved.reason_code, moved.live_features_as_of) == ("COMPETITOR_MOVE", END)
    # The match 14.85 is held at 18 by the daily change window around the last price 20 (the band loses).
    assert (moved.price_usd, moved.guardrails[0]) == (18.0, "DAILY_CHANGE_LIMIT")

    later = END + timedelta(minutes=3)
    current[0] = live(features("SKU-000001", 20.1), features("SKU-000002", 15.0),
                      features("SKU-000004", index=2.0, as_of=later))
    books.on_live_change(current[0], frozenset({"SKU-000004"}))

    assert books.decided == 3 and books.book(snapshot(), None, None) is book
    assert book.entries["SKU-000001"] is untouched  # not decided again: its answers stay
    assert book.get("SKU-000004").reason_code == "DEMAND_SURGE"  # rule-based prices ignore demand: same price
    assert book.get("SKU-000004").price_usd == daily.price_usd
    assert book.get("SKU-000004").live_features_as_of == later


def test_answers_name_the_live_as_of_time_and_reason_and_fall_back_without_live_tables():
    current = [live(features("SKU-000002", 15.0))]
    books = PriceBooks()
    serving = SimpleNamespace(
        models=SimpleNamespace(get=lambda name, alias: None), prices=books,
        live_prices=LivePriceBook(books, lambda: current[0], POLICY, now=lambda: NOW),
        live_features=SimpleNamespace(snapshot=current[0]), metrics=SimpleNamespace(record_fallback=lambda *a: None))
    live_arm = Assignment("pricing_model_vs_rules", "live", "live", "champion", "assigned", 1)

    # No model loaded: the live arm falls back to the rule-based daily price, like the model arm.
    answer = price_sku(serving, "SKU-000002", live_arm, snapshot()).answer
    assert (answer.strategy, answer.fallback, answer.reason_code, answer.live_features_as_of) == (
        "rule_based", True, None, None)

    model = SimpleNamespace(name="pricing", alias="champion", version="7", model=None)
    serving.models = SimpleNamespace(get=lambda name, alias: model)
    answer = price_sku(serving, "SKU-000002", live_arm, snapshot()).answer
    assert (answer.strategy, answer.fallback, answer.price_usd, answer.reason_code, answer.live_features_as_of) == (
        "live", False, 18.0, "COMPETITOR_MOVE", END)

    serving.live_features = SimpleNamespace(snapshot=LiveSnapshot({}, {LIVE_ACTIVITY_TABLE: None,
                                                                        LIVE_COMPETITOR_TABLE: None}, NOW))
    answer = price_sku(serving, "SKU-000002", live_arm, snapshot()).answer
    assert (answer.strategy, answer.fallback, answer.fallback_reason, answer.reason_code) == (
        "optimizer", True, "no live features: the live tables do not exist yet", None)

