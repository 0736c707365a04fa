"""Online features: what the API looks up per request, in memory, built from Delta tables without Spark.

Contents (one `FeatureSnapshot`, swapped atomically when a table changes):
- pricing: the latest row per SKU (greatest `as_of_date`) of `gold.pricing_features`, its numeric
  columns as one float matrix for model input, every column as a dict;
- `silver.products`: category, weight and dimensions, MAP and list price per SKU;
- shipping: the rate card effective today from `silver.shipping_rates` (per carrier and service level,
  the rows of the latest `effective_from` on or before today, UTC) and the zone chart
  `silver.shipping_zones` (3-digit postal prefix -> zone, remote flag).
Lookups are dict gets and numpy indexing (about a microsecond).

The tables are read with delta-rs in a child process (`lakehouse.delta_reader.DeltaReader`): the server
and the tests exit cleanly.

`OnlineFeatures` builds the snapshot at start-up, then checks the tables' Delta versions every
`settings.online_features_refresh_s` seconds (and the date, for the rate card); a changed version is
re-read at that version, the snapshot rebuilt and swapped. A table that does not exist yet (or is not
registered yet) leaves its part empty, with version None, until it appears. A failed read keeps the
previous snapshot and is retried at the next check.

`LiveFeatureStore` polls the two live tables the streaming features keep (`gold.live_activity`,
`gold.live_competitor_prices`) every `settings.live_features_poll_s` seconds with the same reader: per SKU a
`LiveFeatures` (current 15- and 60-minute windows, the live competitor minimum), and the SKUs whose
live features changed since the previous poll, handed to its subscribers (the live price book).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.delta_reader import DeltaReader, storage_options
from lakehouse.settings import Settings
from transforms import rules
from transforms.rate_sheets import in_force

if TYPE_CHECKING:  # the reader's child process imports this module: it stays free of Spark and Prometheus
    from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

PRICING_TABLE = "gold.pricing_features"
PRODUCTS_TABLE = "silver.products"
RATES_TABLE = "silver.shipping_rates"
ZONES_TABLE = "silver.shipping_zones"

# The columns read per table; None reads every column (the gold table's columns are its contract).
COLUMNS: dict[str, tuple[str, ...] | None] = {
    PRICING_TABLE: None,
    PRODUCTS_TABLE: ("sku", "category", "weight_kg", "length_cm", "width_cm", "height_cm", "map_price_usd",
                     "list_price_usd"),
    RATES_TABLE: ("carrier", "service_level", "zone", "weight_break_kg", "base_rate_usd", "per_kg_over_usd",
                  "volumetric_divisor", "fuel_surcharge_pct", "remote_surcharge_usd", "effective_from"),
    ZONES_TABLE: ("postal_prefix", "zone", "is_remote"),
}
# Pricing feature columns kept out of the model matrix: identifiers and times, not features.
NOT_FEATURES = ("sku", "as_of_date", "feature_time")

LIVE_ACTIVITY_TABLE = "gold.live_activity"
LIVE_COMPETITOR_TABLE = "gold.live_competitor_prices"
LIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    LIVE_ACTIVITY_TABLE: ("sku", "window_minutes", "window_end", "views", "add_to_carts", "demand_index"),
    LIVE_COMPETITOR_TABLE: ("sku", "price_usd", "observed_at"),
}


# ---------------------------------------------------------------------------------------------------
# Pure builders: Arrow tables -> lookup structures


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    category: str | None
    weight_kg: float | None
    length_cm: float | None
    width_cm: float | None
    height_cm: float | None
    map_price_usd: float | None
    list_price_usd: float | None


@dataclass(frozen=True, slots=True)
class Zone:
    zone: int
    is_remote: bool


@dataclass(frozen=True)
class RateCard:
    """One carrier's rates for one service level and zone: weight breaks ascending, all money in USD."""

    carrier: str
    service_level: str
    zone: int
    effective_from: date
    breaks_kg: np.ndarray
    base_usd: np.ndarray
    per_kg_over_usd: float  # above the last break
    volumetric_divisor: int
    fuel_surcharge_pct: float
    remote_surcharge_usd: float

    def billable_kg(self, weight_kg, volume_cm3):
        """`transforms.rules.billable_weight_kg` with this card's volumetric divisor; arrays or numbers."""
        return rules.billable_weight_kg(
            weight_kg, rules.volumetric_weight_kg(np.asarray(volume_cm3, dtype=float), self.volumetric_divisor))

    def cost_usd(self, billable_kg, remote):
        """`transforms.rules.rate_card_cost_usd` on this card; arrays or numbers."""
        weight = np.asarray(billable_kg, dtype=float)
        return rules.rate_card_cost_usd(
            self.base_usd[rules.weight_break_index(self.breaks_kg, weight)], self.breaks_kg[-1], weight,
            self.per_kg_over_usd, self.fuel_surcharge_pct, self.remote_surcharge_usd, remote)


@dataclass(frozen=True)
class PricingFeatures:
    """The latest pricing feature row per SKU: numeric columns as one float matrix (NaN for null), in
    `columns` order, for model input; every column of the row in `records`."""

    columns: tuple[str, ...]
    matrix: np.ndarray  # [skus, columns]
    rows: dict[str, int]  # sku -> matrix row
    records: dict[str, dict[str, Any]]

    def column_indices(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Positions of `names` in the matrix, for `vector`; KeyError names the missing ones."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise KeyError(f"pricing features lack columns {missing}; they have {list(self.columns)}")
        return np.array([self.columns.index(n) for n in names], dtype=np.intp)

    def vector(self, sku: str, indices: np.ndarray | None = None) -> np.ndarray | None:
        """The SKU's feature values (all columns, or those at `indices`), or None for an unknown SKU."""
        row = self.rows.get(sku)
        if row is None:
            return None
        return self.matrix[row] if indices is None else self.matrix[row, indices]


EMPTY_PRICING = PricingFeatures((), np.empty((0, 0)), {}, {})


def latest_per_sku(table: pa.Table) -> pa.Table:
    """One row per `sku`: the one with the greatest `as_of_date`. Grain: one row per SKU."""
    missing = {"sku", "as_of_date"} - set(table.column_names)
    if missing:
        raise ValueError(f"{PRICING_TABLE} lacks columns {sorted(missing)}; it has {table.column_names}")
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[("sku", "ascending"), ("as_of_date", "descending")])
    ordered = table.take(order)
    skus = ordered.column("sku").to_numpy(zero_copy_only=False)
    first = np.ones(len(skus), dtype=bool)
    first[1:] = skus[1:] != skus[:-1]
    return ordered.filter(pa.array(first))


def pricing_features(latest: pa.Table) -> PricingFeatures:
    """`latest_per_sku` rows -> PricingFeatures (numeric columns other than NOT_FEATURES in the matrix)."""
    if latest.num_rows == 0:
        return EMPTY_PRICING
    numeric = tuple(f.name for f in latest.schema if f.name not in NOT_FEATURES
                    and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type)))
    matrix = np.column_stack([
        latest.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False) for name in numeric
    ]) if numeric else np.empty((latest.num_rows, 0))
    records = latest.to_pylist()
    return PricingFeatures(numeric, np.ascontiguousarray(matrix, dtype=np.float64),
                           {r["sku"]: i for i, r in enumerate(records)}, {r["sku"]: r for r in records})


def products(table: pa.Table) -> dict[str, Product]:
    """silver.products rows -> Product per SKU."""
    return {r["sku"]: Product(**r) for r in table.select(list(COLUMNS[PRODUCTS_TABLE])).to_pylist()}


def zones(table: pa.Table) -> dict[str, Zone]:
    """silver.shipping_zones rows -> Zone per 3-digit postal prefix."""
    return {r["postal_prefix"]: Zone(r["zone"], bool(r["is_remote"])) for r in table.to_pylist()}


def rate_cards(table: pa.Table, today: date) -> dict[tuple[str, str, int], RateCard]:
    """The rate card effective `today`: per carrier and service level, the sheet in force
    (`transforms.rate_sheets.in_force`: a sheet is issued whole), as one RateCard per zone."""
    rows = in_force(table.to_pandas(), today).sort_values(["carrier", "service_level", "zone", "weight_break_kg"])
    cards = {}
    for (carrier, level, zone), breaks in rows.groupby(["carrier", "service_level", "zone"], sort=False):
        last = breaks.iloc[-1]
        key = (carrier, level, int(zone))
        cards[key] = RateCard(*key, effective_from=last["effective_from"],
                              breaks_kg=breaks["weight_break_kg"].to_numpy(float),
                              base_usd=breaks["base_rate_usd"].to_numpy(float),
                              per_kg_over_usd=float(last["per_kg_over_usd"]),
                              volumetric_divisor=int(last["volumetric_divisor"]),
                              fuel_surcharge_pct=float(last["fuel_surcharge_pct"]),
                              remote_surcharge_usd=float(last["remote_surcharge_usd"]))
    return cards


def postal_prefix(postal_code: str | None) -> str | None:
    """The 3-digit prefix of a ZIP as customers type it (`transforms.rules.zip5`), or None if it is not one."""
    zip_code = rules.zip5(postal_code)
    return zip_code[:3] if zip_code else None


@dataclass(frozen=True)
class FeatureSnapshot:
    """Everything the API looks up, from one set of table versions. Take it once per request."""

    versions: dict[str, int | None]
    day: date  # the UTC day the rate card was chosen for
    built_at: datetime
    pricing: PricingFeatures = EMPTY_PRICING
    products: dict[str, Product] = field(default_factory=dict)
    rate_cards: dict[tuple[str, str, int], RateCard] = field(default_factory=dict)
    zones: dict[str, Zone] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every table exists (the parts may still be empty if a table has no rows)."""
        return all(v is not None for v in self.versions.values())

    def product(self, sku: str) -> Product | None:
        return self.products.get(sku)

    def zone(self, postal_code: str | None) -> Zone | None:
        prefix = postal_prefix(postal_code)
        return self.zones.get(prefix) if prefix else None

    def rate_card(self, carrier: str, service_level: str, zone: int) -> RateCard | None:
        return self.rate_cards.get((carrier, service_level, zone))


def build_snapshot(tables: dict[str, pa.Table | None], versions: dict[str, int | None], day: date,
                   built_at: datetime) -> FeatureSnapshot:
    """The lookup structures from the prepared tables (the pricing table already `latest_per_sku`)."""
    def part(name: str, builder: Callable, *args):
        table = tables.get(name)
        return builder(table, *args) if table is not None else None

    return FeatureSnapshot(
        versions=dict(versions), day=day, built_at=built_at,
        pricing=part(PRICING_TABLE, pricing_features) or EMPTY_PRICING,
        products=part(PRODUCTS_TABLE, products) or {},
        rate_cards=part(RATES_TABLE, rate_cards, day) or {},
        zones=part(ZONES_TABLE, zones) or {},
    )


def table_locations(settings: Settings, names) -> dict[str, str]:
    """The location of each of `names` that the table registry knows (one not registered yet is left out)."""
    # The registry imports Spark's types; the reader process imports this module and stays free of Spark.
    from lakehouse.tables import TABLES

    return {name: TABLES[name].location(settings) for name in names if name in TABLES}


# ---------------------------------------------------------------------------------------------------
# The store


class OnlineFeatures:
    """The current FeatureSnapshot and its refresh (see the module docstring)."""

    def __init__(self, settings: Settings, metrics: ServingMetrics | None = None, reader: DeltaReader | None = None,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()):
        self.settings, self.metrics, self.today = settings, metrics, today
        self.reader = reader or DeltaReader(storage_options(settings))
        self._tables: dict[str, pa.Table | None] = {}
        self._snapshot = FeatureSnapshot(dict.fromkeys(COLUMNS), today(), datetime.now(UTC))
        self._refresh_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unregistered_warned: set[str] = set()

    @property
    def snapshot(self) -> FeatureSnapshot:
        return self._snapshot

    def versions(self) -> dict[str, int | None]:
        """The Delta version of each table the current snapshot was built from (None: no table yet)."""
        return dict(self._snapshot.versions)

    def _locations(self) -> dict[str, str]:
        registered = table_locations(self.settings, COLUMNS)
        unregistered = COLUMNS.keys() - registered.keys() - self._unregistered_warned
        if unregistered:
            log.warning("feature tables not in the table registry yet; their features stay empty",
                        extra={"tables": sorted(unregistered)})
            self._unregistered_warned |= unregistered
        return registered

    def refresh(self) -> bool:
        """Re-read the tables whose Delta version changed (and rebuild for a new day); True if swapped.

        Raises DeltaReadError when the tables cannot be read; the current snapshot stays."""
        with self._refresh_lock:
            locations = self._locations()
            latest = {**dict.fromkeys(COLUMNS), **self.reader.versions(locations)}
            current, day = self._snapshot, self.today()
            changed = [name for name in COLUMNS if latest[name] != current.versions[name] or name not in self._tables]
            if not changed and day == current.day:
                return False
            tables = dict(self._tables)
            for name in changed:
                if latest[name] is None:
                    tables[name] = None
                    continue
                rows = self.reader.read(locations[name], latest[name], COLUMNS[name])
                tables[name] = latest_per_sku(rows) if name == PRICING_TABLE else rows
            snapshot = build_snapshot(tables, latest, day, datetime.now(UTC))
            self._tables, self._snapshot = tables, snapshot  # one assignment is what readers see: atomic
            if self.metrics is not None:
                self.metrics.set_feature_versions(snapshot.versions)
            log.info("online features loaded", extra={
                "versions": snapshot.versions, "day": day.isoformat(), "skus_priced": len(snapshot.pricing.rows),
                "products": len(snapshot.products), "rate_cards": len(snapshot.rate_cards),
                "zones": len(snapshot.zones)})
            return True

    def start(self) -> OnlineFeatures:
        """Load once now (a failure is logged: the API starts with empty features and retries), then
        check for new versions every `online_features_refresh_s` seconds in a background thread."""
        self._refresh_logged()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="online-features", daemon=True)
            self._thread.start()
        return self

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except Exception as err:  # a table broken or not as expected: keep serving, say why, retry later
            log.error("online features not refreshed; serving the previous ones", extra={"error": repr(err)})

    def _run(self) -> None:
        while not self._stopping.wait(self.settings.online_features_refresh_s):
            self._refresh_logged()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.reader.close()


# ---------------------------------------------------------------------------------------------------
# Live features


@dataclass(frozen=True, slots=True)
class LiveFeatures:
    """One SKU's live features at a poll: the current 15- and 60-minute windows of `gold.live_activity`
    (0 events when the window has no row) and the minimum of its competitors' latest prices."""

    sku: str
    as_of: datetime | None  # the newest window_end / observed_at used (None: nothing observed)
    competitor_min_usd: float | None
    views_15m: int
    add_to_carts_15m: int
    views_60m: int
    add_to_carts_60m: int
    demand_index_60m: float | None  # None: no row for the current 60-minute window, or no demand profile

    def values(self) -> tuple:
        """Everything but `as_of`: what a change is judged on (the current window moves every minute)."""
        return (self.competitor_min_usd, self.views_15m, self.add_to_carts_15m, self.views_60m,
                self.add_to_carts_60m, self.demand_index_60m)


def current_window_end(now: datetime) -> datetime:
    """The end of the sliding windows that hold `now`: the next whole minute after it ([start, end) windows)."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _equal_to(column: pa.ChunkedArray, when: datetime) -> pa.ChunkedArray:
    naive = column.type.tz is None  # a timestamp without time zone holds UTC wall time
    return pc.equal(column, pa.scalar(when.astimezone(UTC).replace(tzinfo=None) if naive else when, column.type))


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def live_features(activity: pa.Table | None, competitors: pa.Table | None, now: datetime) -> dict[str, LiveFeatures]:
    """Per SKU with a row in a current window or a competitor price, its LiveFeatures at `now` (UTC).
    Grain: one per SKU."""
    end = current_window_end(now)
    windows: dict[str, dict[int, dict]] = {}
    if activity is not None and activity.num_rows:
        for row in activity.filter(_equal_to(activity.column("window_end"), end)).to_pylist():
            windows.setdefault(row["sku"], {})[row["window_minutes"]] = row
    prices: dict[str, tuple[float, datetime]] = {}
    if competitors is not None and competitors.num_rows:
        known = competitors.filter(pc.is_valid(competitors.column("price_usd")))
        grouped = known.group_by("sku").aggregate([("price_usd", "min"), ("observed_at", "max")])
        prices = {r["sku"]: (r["price_usd_min"], _utc(r["observed_at_max"])) for r in grouped.to_pylist()}
    features = {}
    for sku in windows.keys() | prices.keys():
        if sku is None:
            continue
        short, hour = windows.get(sku, {}).get(15, {}), windows.get(sku, {}).get(60, {})
        competitor_min, observed_at = prices.get(sku, (None, None))
        times = [t for t in (observed_at, end if short or hour else None) if t is not None]
        features[sku] = LiveFeatures(sku, max(times) if times else None, competitor_min, short.get("views", 0),
                                     short.get("add_to_carts", 0), hour.get("views", 0), hour.get("add_to_carts", 0),
                                     hour.get("demand_index"))
    return features


def changed_skus(previous: dict[str, LiveFeatures], current: dict[str, LiveFeatures]) -> frozenset[str]:
    """SKUs whose live features differ between two polls (`LiveFeatures.values`), appeared or went."""
    return frozenset(sku for sku in previous.keys() | current.keys()
                     if sku not in previous or sku not in current or previous[sku].values() != current[sku].values())


@dataclass(frozen=True)
class LiveSnapshot:
    """The live features of one poll; `available` is false while neither live table exists."""

    features: dict[str, LiveFeatures]
    versions: dict[str, int | None]
    polled_at: datetime

    @property
    def available(self) -> bool:
        return any(v is not None for v in self.versions.values())

    def get(self, sku: str) -> LiveFeatures | None:
        return self.features.get(sku)


LiveListener = Callable[[LiveSnapshot, frozenset[str]], None]


class LiveFeatureStore:
    """The current LiveSnapshot, polled every `poll_s` seconds; subscribers hear of the changed SKUs.

    A table is re-read only when its Delta version moved; the features are recomputed at every poll (the
    current windows move with the clock). Listeners run in the polling thread, after the swap."""

    def __init__(self, settings: Settings, reader: DeltaReader, poll_s: float | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.settings, self.reader, self.now = settings, reader, now
        self.poll_s = poll_s or settings.live_features_poll_s
        self._tables: dict[str, tuple[int | None, pa.Table | None]] = {}
        self._snapshot = LiveSnapshot({}, dict.fromkeys(LIVE_COLUMNS), now())
        self._listeners: list[LiveListener] = []
        self._poll_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def snapshot(self) -> LiveSnapshot:
        return self._snapshot

    def subscribe(self, listener: LiveListener) -> None:
        self._listeners.append(listener)

    def poll(self) -> frozenset[str]:
        """Read the live tables whose version moved, recompute the features, swap, tell the listeners;
        the SKUs whose features changed. Raises DeltaReadError when a table cannot be read."""
        with self._poll_lock:
            locations = table_locations(self.settings, LIVE_COLUMNS)
            latest = {**dict.fromkeys(LIVE_COLUMNS), **self.reader.versions(locations)}
            for name, version in latest.items():
                if name not in self._tables or self._tables[name][0] != version:
                    rows = None if version is None else self.reader.read(locations[name], version, LIVE_COLUMNS[name])
                    self._tables[name] = (version, rows)
            now = self.now()
            features = live_features(self._tables[LIVE_ACTIVITY_TABLE][1], self._tables[LIVE_COMPETITOR_TABLE][1], now)
            changed = changed_skus(self._snapshot.features, features)
            self._snapshot = snapshot = LiveSnapshot(features, latest, now)
        for listener in self._listeners:
            try:
                listener(snapshot, changed)
            except Exception as err:  # a listener's failure must not stop the polling
                log.exception("live features listener failed", extra={"error": repr(err)})
        return changed

    def start(self) -> LiveFeatureStore:
        """Poll once now (a failure is logged), then every `poll_s` seconds in a background thread."""
        self._poll_logged()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="live-features", daemon=True)
            self._thread.start()
        return self

    def _poll_logged(self) -> None:
        try:
            self.poll()
        except Exception as err:  # keep the previous live features, say why, retry at the next poll
            log.error("live features not polled; serving the previous ones", extra={"error": repr(err)})

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            self._poll_logged()

    def close(self) -> None:
        """Stop polling (the reader belongs to whoever made it)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
