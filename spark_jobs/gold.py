"""Gold: silver -> the pricing and shipping feature tables, behind Great Expectations quality gates.

Thin job around `features` (definitions: docs/features.md). A run:

1. Pins the current version of every silver table gold reads (`SILVER_INPUTS`). When the last build
   recorded in `ops.gold_progress` read exactly these versions, it stops: nothing is written.
2. Reads what changed in silver since that build from the silver tables' change feed and finds the
   earliest date it touches (`features.increment`): gold rows dated from then on are recomputed, the
   rest are kept. A first build, `full_refresh`, a change feed that does not reach back to the last
   build, or a product change that sits on every day recomputes everything.
3. Builds `gold.pricing_daily` (the clickstream and order lines from that date, aggregated once to
   SKU-day), then `gold.pricing_features` (from that date's as-of rows on) and `gold.demand_profile` from
   the daily rows, and `gold.shipping_features` (orders from that date). Each slice is cached, validated
   once with its suite (`expectations.suites.GOLD_SUITES`; results to `ops.quality_results`) and split by
   its `drop` rules (removed rows go to `gold.quarantine` with the rules' names).
4. A failed `fail` rule in any table: no gold table is written (all keep their version), the run
   raises QualityGateError listing every failed rule (`lakehouse gold` exits 2).
5. Otherwise each gold table's rows from that date on, and their quarantine, are replaced in one commit
   per table (`replaceWhere`: rows a late change moved into the quarantine leave the table), then the
   silver versions read go to `ops.gold_progress`. A crash before that point only means the next run
   builds again from the same versions.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from expectations.gate import QualityGate
from expectations.recorder import quality_rows, quarantine_rows, split_by_rules
from expectations.suites import GOLD_SUITES
from features.demand_profile import demand_profile
from features.increment import changed_rows, rebuild_from
from features.pricing import lowest_cost_history, pricing_daily, pricing_features, sku_day_activity
from features.shipping import shipping_features
from lakehouse import delta
from lakehouse.delta import delta_exists, read_delta, table_version
from lakehouse.quality import QualityGateError, RuleResult, gate_failures
from lakehouse.schemas.gold import GOLD_KEYS
from lakehouse.schemas.ops import GOLD_PROGRESS, QUALITY_RESULTS
from lakehouse.settings import Settings
from lakehouse.tables import table

log = logging.getLogger(__name__)

SILVER_INPUTS = ("products", "suppliers", "market_prices", "transactions", "clickstream", "shipping_rates",
                 "quarantine")
# silver.quarantine exists once a drop rule has removed a row; until then gold reads it as empty.
_EMPTY_QUARANTINE = "source string, record_key string, record string"

@dataclass(frozen=True)
class GoldResult:
    """What a run did: rows written and quarantined per gold table (empty when skipped), and from which
    date it recomputed (None: every row, for `full_reason`)."""

    run_id: str
    skipped: bool
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    since: date | None = None
    full_reason: str | None = None

    def summary(self) -> str:
        if self.skipped:
            return "nothing gold reads changed since the last build: nothing to do"
        scope = f"from {self.since}" if self.since else f"full ({self.full_reason})"
        return f"{scope}: " + ", ".join(f"{name} {n} rows ({self.quarantined[name]} quarantined)"
                                        for name, n in self.rows.items())


def silver_versions(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """The current version of every silver table gold reads (silver.quarantine only if it exists yet);
    another missing table is an error."""
    versions = {}
    for source in SILVER_INPUTS:
        name = f"silver.{source}"
        version = table_version(spark, table(name).location(settings))
        if version is not None:
            versions[name] = version
        elif source != "quarantine":
            raise FileNotFoundError(f"gold reads {name}, which does not exist yet: run `lakehouse silver` first")
    return versions


def last_build(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """The silver versions the latest recorded build read ({} before the first build)."""
    location = table("ops.gold_progress").location(settings)
    if not delta_exists(spark, location):
        return {}
    progress = read_delta(spark, location)
    latest = progress.agg(F.max_by("run_id", "built_at")).first()[0]
    return {r.silver_table: r.silver_version for r in progress.where(F.col("run_id") == latest).collect()}


@dataclass
class _Gated:
    """One gold table after its gate: the rows to write, the rows to quarantine, the rule results."""

    kept: DataFrame
    quarantined: DataFrame
    results: list[RuleResult]


def _gate(gate: QualityGate, name: str, frame: DataFrame, run_id: str) -> _Gated:
    results = gate.validate(name, frame)
    kept, dropped = split_by_rules(frame, gate.suites[name])
    return _Gated(kept, quarantine_rows(dropped, ("table", name), GOLD_KEYS[name], run_id), results)


def changes_since(spark: SparkSession, settings: Settings, previous: dict[str, int], versions: dict[str, int]
                  ) -> tuple[str | None, date | None]:
    """(a reason to rebuild everything or None, the earliest date silver's changes since the `previous`
    build touch, or None when nothing gold reads changed), from the silver tables' change feed."""
    if not previous:
        return "first build", None
    changed = []
    for name, version in versions.items():
        start = previous.get(name, -1) + 1
        if start > version:
            continue
        try:
            feed = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", start)
                    .option("endingVersion", version).load(table(name).location(settings)))
            changed.append(changed_rows(name.split(".")[1], feed))
        except AnalysisException as error:  # the table predates its change feed, or the log was cleaned up
            log.info("no change feed: full rebuild", extra={"table": name, "from_version": start,
                                                            "error": str(error).splitlines()[0]})
            return f"{name} has no change feed from version {start}", None
    if not changed:
        return None, None
    frame = changed[0]
    for more in changed[1:]:
        frame = frame.unionByName(more)
    return rebuild_from(frame)


def _from(column: str, since: date | None) -> Column:
    """The rows of a recomputed slice: `column` on or after `since` (all rows when None)."""
    return F.lit(True) if since is None else F.col(column) >= F.lit(since)


# Each recomputed gold table's date column and the SQL of the same date in its gold.quarantine rows
# (demand_profile is rebuilt whole).
_SLICES = {"pricing_daily": ("date", "get_json_object(record_key, '$.date')"),
           "pricing_features": ("as_of_date", "get_json_object(record_key, '$.as_of_date')"),
           "shipping_features": ("order_date", "get_json_object(record, '$.order_date')")}


def _first_day(name: str, since: date) -> date:
    """The first date of table `name`'s recomputed rows: a feature row's as-of date is the day after its data."""
    return since + timedelta(days=1) if name == "pricing_features" else since


def _slice_condition(name: str, since: date) -> str:
    """The SQL condition selecting gold table `name`'s recomputed rows."""
    return f"`{_SLICES[name][0]}` >= DATE'{_first_day(name, since).isoformat()}'"


def _quarantine_condition(since: date) -> str:
    """gold.quarantine's rows of the recomputed slices, and all of demand_profile's."""
    parts = [f"(`table` = '{name}' AND {key_date} >= '{_first_day(name, since).isoformat()}')"
             for name, (_, key_date) in _SLICES.items()]
    return " OR ".join([*parts, "(`table` = 'demand_profile')"])


def run(spark: SparkSession, settings: Settings, full_refresh: bool = False, run_id: str | None = None
        ) -> GoldResult:
    """Build the gold tables from silver (see the module docstring): the rows silver's changes since the last
    build can move, or every row with `full_refresh` (also when silver is unchanged). Raises
    QualityGateError when a `fail` rule fails (no gold table written), FileNotFoundError when a silver table
    is missing."""
    run_id, clock = run_id or uuid.uuid4().hex, time.monotonic()
    versions = silver_versions(spark, settings)
    previous = last_build(spark, settings)
    if not full_refresh and versions == previous:
        log.info("gold up to date", extra={"silver_versions": versions})
        return GoldResult(run_id, skipped=True)
    full_reason, since = ("full refresh", None) if full_refresh else changes_since(spark, settings, previous,
                                                                                  versions)
    if full_reason is None and since is None:
        log.info("silver changed, but nothing gold reads", extra={"silver_versions": versions})
        _record_progress(spark, settings, run_id, versions)
        return GoldResult(run_id, skipped=True)
    log.info("gold build", extra={"since": str(since), "full_reason": full_reason})
    since = None if full_reason else since

    silver = {name.split(".")[1]: read_delta(spark, table(name).location(settings), version)
              for name, version in versions.items()}
    silver.setdefault("quarantine", spark.createDataFrame([], _EMPTY_QUARANTINE))
    # A site of its own: the GE context is ephemeral, so one index lists one run's validations and
    # gold's would otherwise replace silver's.
    gate = QualityGate(settings.state_dir / "data_docs" / "gold", GOLD_SUITES, layer="gold")
    cached: list[DataFrame] = []
    rows: dict[str, int] = {}
    quarantined: dict[str, int] = {}

    def built(name: str, frame: DataFrame) -> _Gated:
        cached.append(frame.persist())
        gated = _gate(gate, name, frame, run_id)
        log.info("gold table validated", extra={
            "table": f"gold.{name}", "rows": gated.results[0].element_count if gated.results else None,
            "rules_failed": [r.rule.name for r in gated.results if not r.success],
            "elapsed_s": round(time.monotonic() - clock, 1)})
        return gated

    try:
        # The one pass over clickstream and order lines; pricing_daily reads the result twice.
        activity = sku_day_activity(silver["clickstream"].where(_from("event_date", since)),
                                    silver["transactions"].where(_from("transaction_date", since))).persist()
        cached.append(activity)
        kept_before = _kept_before(spark, settings, since)
        first = None if since is None else max(since, _first_date(kept_before, activity))
        daily = built("pricing_daily", pricing_daily(silver["products"], activity, silver["market_prices"],
                                                     silver["suppliers"], first))
        all_daily = daily.kept if kept_before is None else kept_before.unionByName(daily.kept)
        gated = {
            "pricing_daily": daily,
            "pricing_features": built("pricing_features", pricing_features(
                all_daily, silver["products"], lowest_cost_history(silver["suppliers"]))
                .where(_from("as_of_date", since and _first_day("pricing_features", since)))),
            "demand_profile": built("demand_profile", demand_profile(all_daily, silver["clickstream"],
                                                                     silver["products"])),
            "shipping_features": built("shipping_features", shipping_features(
                silver["transactions"].where(_from("transaction_date", since)), silver["products"],
                silver["shipping_rates"], silver["quarantine"])),
        }
        results = [r for g in gated.values() for r in g.results]
        delta.append_rows(spark, quality_rows(run_id, "gold", results), QUALITY_RESULTS, table("ops.quality_results"),
                          settings)
        failures = gate_failures(results)
        if failures:
            raise QualityGateError(failures)

        quarantine = None
        for name, g in gated.items():
            where = None if since is None or name == "demand_profile" else _slice_condition(name, since)
            delta.replace(g.kept, table(f"gold.{name}"), settings, where=where)
            q = g.quarantined.persist()
            cached.append(q)
            quarantined[name] = q.count()
            rows[name] = g.kept.count()
            quarantine = q if quarantine is None else quarantine.unionByName(q)
            log.info("gold table written", extra={"table": f"gold.{name}", "rows": rows[name],
                                                  "quarantined": quarantined[name],
                                                  "elapsed_s": round(time.monotonic() - clock, 1)})
        delta.replace(quarantine, table("gold.quarantine"), settings,
                      where=None if since is None else _quarantine_condition(since))
        _record_progress(spark, settings, run_id, versions)
    finally:
        for frame in cached:
            frame.unpersist()
        docs = gate.build_docs()
        if docs:
            log.info("data docs", extra={"index": str(docs)})
    result = GoldResult(run_id, skipped=False, rows=rows, quarantined=quarantined, since=since,
                        full_reason=full_reason)
    log.info("gold built", extra={"run_id": run_id, "seconds": round(time.monotonic() - clock, 1),
                                  "summary": result.summary()})
    return result


def _kept_before(spark: SparkSession, settings: Settings, since: date | None) -> DataFrame | None:
    """gold.pricing_daily's rows before `since`, at its current version (None for a full build)."""
    if since is None:
        return None
    location = table("gold.pricing_daily").location(settings)
    return read_delta(spark, location, table_version(spark, location)).where(F.col("date") < F.lit(since))


def _first_date(kept_before: DataFrame, activity: DataFrame) -> date:
    """The first date of the whole history: gold's kept days before the slice, or the slice's own."""
    return kept_before.select("date").unionByName(activity.select("date")).agg(F.min("date")).first()[0]


def _record_progress(spark: SparkSession, settings: Settings, run_id: str, versions: dict[str, int]) -> None:
    built_at = datetime.now(UTC)
    delta.append_rows(spark, [(run_id, name, version, built_at) for name, version in versions.items()],
                      GOLD_PROGRESS, table("ops.gold_progress"), settings)


def step(spark: SparkSession, settings: Settings, full_refresh: bool = False) -> str:
    """The pipeline step (orchestration.steps)."""
    return run(spark, settings, full_refresh=full_refresh).summary()
