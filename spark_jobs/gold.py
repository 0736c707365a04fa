"""Gold: silver -> the pricing and shipping feature tables, behind Great Expectations quality gates.

Thin job around `features` (definitions: docs/features.md). A run:

1. Pins the current version of every silver table gold reads (`SILVER_INPUTS`). When the last build
   recorded in `ops.gold_progress` read exactly these versions, it stops: nothing is written.
2. Builds `gold.pricing_daily` (the clickstream and order lines aggregated once, to SKU-day), then
   `gold.pricing_features` and `gold.demand_profile` from its kept rows, and `gold.shipping_features`.
   Each is cached, validated once with its suite (`expectations.suites.GOLD_SUITES`; results to
   `ops.quality_results`) and split by its `drop` rules (removed rows go to `gold.quarantine` with the
   rules' names).
3. A failed `fail` rule in any table: no gold table is written (all keep their version), the run
   raises QualityGateError listing every failed rule (`lakehouse gold` exits 2).
4. Otherwise every gold table and `gold.quarantine` is overwritten (a full recompute: the tables are
   small), then the silver versions read go to `ops.gold_progress`. A crash before that point only
   means the next run builds again.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from expectations.gate import QualityGate
from expectations.recorder import quality_rows, quarantine_rows, split_by_rules
from expectations.suites import GOLD_SUITES
from features.demand_profile import demand_profile
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
    """What a run did: rows written and quarantined per gold table (empty when skipped)."""

    run_id: str
    skipped: bool
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if self.skipped:
            return "silver unchanged since the last build: nothing to do"
        return ", ".join(f"{name} {n} rows ({self.quarantined[name]} quarantined)" for name, n in self.rows.items())


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


def run(spark: SparkSession, settings: Settings, force: bool = False, run_id: str | None = None) -> GoldResult:
    """Build every gold table from silver (see the module docstring); `force` builds even when silver is
    unchanged. Raises QualityGateError when a `fail` rule fails (no gold table written),
    FileNotFoundError when a silver table is missing."""
    run_id, clock = run_id or uuid.uuid4().hex, time.monotonic()
    versions = silver_versions(spark, settings)
    if not force and versions == last_build(spark, settings):
        log.info("gold up to date", extra={"silver_versions": versions})
        return GoldResult(run_id, skipped=True)

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
        activity = sku_day_activity(silver["clickstream"], silver["transactions"]).persist()
        cached.append(activity)
        daily = built("pricing_daily", pricing_daily(silver["products"], activity, silver["market_prices"],
                                                     silver["suppliers"]))
        gated = {
            "pricing_daily": daily,
            "pricing_features": built("pricing_features", pricing_features(
                daily.kept, silver["products"], lowest_cost_history(silver["suppliers"]))),
            "demand_profile": built("demand_profile", demand_profile(daily.kept, silver["clickstream"],
                                                                     silver["products"])),
            "shipping_features": built("shipping_features", shipping_features(
                silver["transactions"], silver["products"], silver["shipping_rates"], silver["quarantine"])),
        }
        results = [r for g in gated.values() for r in g.results]
        delta.append_rows(spark, quality_rows(run_id, "gold", results), QUALITY_RESULTS, table("ops.quality_results"),
                          settings)
        failures = gate_failures(results)
        if failures:
            raise QualityGateError(failures)

        quarantine = None
        for name, g in gated.items():
            delta.replace(g.kept, table(f"gold.{name}"), settings)
            q = g.quarantined.persist()
            cached.append(q)
            quarantined[name] = q.count()
            rows[name] = g.kept.count()
            quarantine = q if quarantine is None else quarantine.unionByName(q)
            log.info("gold table written", extra={"table": f"gold.{name}", "rows": rows[name],
                                                  "quarantined": quarantined[name],
                                                  "elapsed_s": round(time.monotonic() - clock, 1)})
        delta.replace(quarantine, table("gold.quarantine"), settings)
        built_at = datetime.now(UTC)
        delta.append_rows(spark, [(run_id, name, version, built_at) for name, version in versions.items()],
                          GOLD_PROGRESS, table("ops.gold_progress"), settings)
    finally:
        for frame in cached:
            frame.unpersist()
        docs = gate.build_docs()
        if docs:
            log.info("data docs", extra={"index": str(docs)})
    result = GoldResult(run_id, skipped=False, rows=rows, quarantined=quarantined)
    log.info("gold built", extra={"run_id": run_id, "seconds": round(time.monotonic() - clock, 1),
                                  "summary": result.summary()})
    return result


def step(spark: SparkSession, settings: Settings, force: bool = False) -> str:
    """The pipeline step (orchestration.steps)."""
    return run(spark, settings, force=force).summary()
