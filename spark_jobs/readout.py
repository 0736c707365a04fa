"""The experiment readout job (`lakehouse readout --experiment NAME`; docs/experiments.md).

A pricing experiment reads out as below; a shipping one over the visitors quoted a shipping charge
(`shipping_visitor_outcomes`, `readout.shipping`'s metrics: conversion, order value, shipping margin, abandonment).

1. `visitor_outcomes`: the experiment's pricing decisions (silver.decisions) joined with the behaviour
   events that name them (silver.clickstream, on decision_id), purchases' order lines (silver.transactions,
   on order_id and sku) for revenue, and the supplier cost as of the decision's date (silver.suppliers)
   for margin; aggregated to one row per variant and visitor (the experiment's unit).
2. `readout.frames.readout_rows`: metrics per variant, lift against the control with delta-method
   intervals, z / Welch tests, the sample-ratio-mismatch check.
3. Append to gold.experiment_readout; plots (PNG) and the figures as metrics in an MLflow run of the
   MLflow experiment `experiment-readouts`.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse import delta
from lakehouse.delta import delta_exists, read_delta
from lakehouse.schemas.readout import EXPERIMENT_READOUT
from lakehouse.settings import Settings, get_settings
from lakehouse.spark import get_spark
from lakehouse.tables import table
from readout.frames import VISITOR_COLUMNS, readout_rows
from readout.shipping import SHIPPING_METRICS, SHIPPING_VISITOR_COLUMNS
from serving.experiments import Experiment, Experiments

log = logging.getLogger(__name__)

READOUT_TABLE = "gold.experiment_readout"
MLFLOW_EXPERIMENT = "experiment-readouts"


class ReadoutError(ValueError):
    """The readout cannot be computed (unknown experiment, no decisions, missing tables); the message says why."""


@dataclass(frozen=True)
class ReadoutResult:
    readout_id: str
    experiment: str
    control: str
    rows: pd.DataFrame
    purchases_without_lines: int
    lines_without_cost: int
    mlflow_run_url: str | None = None


def control_variant(experiment: Experiment) -> str:
    """The variant the others are compared with: the rule-based one (the old way), else the default."""
    return next((v.name for v in experiment.variants if v.strategy == "rule_based"), experiment.default.name)


def decision_outcomes(decisions: DataFrame, clickstream: DataFrame, transactions: DataFrame, suppliers: DataFrame,
                      experiment: str, unit: str) -> DataFrame:
    """What happened after each pricing decision of `experiment` that names its unit.

    Grain: one row per decision_id: variant, visitor_id, added_to_cart / purchased / abandoned flags,
    revenue_usd and margin_usd of its purchased line (0 when not bought), has_line (a purchase whose
    order line arrived) and has_cost (the line's unit cost is known)."""
    shown = (decisions.where((F.col("endpoint") == "pricing") & (F.col("experiment") == experiment)
                             & F.col(unit).isNotNull())
             .select("decision_id", "variant", F.col(unit).alias("visitor_id"), "sku", "event_date"))
    behaviour = (clickstream.where(F.col("decision_id").isNotNull()).groupBy("decision_id").agg(
        F.max(F.col("event_type") == "add_to_cart").alias("added_to_cart"),
        F.max(F.col("event_type") == "purchase").alias("purchased"),
        F.max(F.col("event_type") == "abandon").alias("abandoned"),
        F.max(F.when(F.col("event_type") == "purchase", F.col("order_id"))).alias("order_id")))
    lines = transactions.select("order_id", "sku", "quantity", "unit_price_paid_usd")
    costs = suppliers.select(F.col("sku").alias("cost_sku"), "valid_from", "unit_cost_usd")
    joined = (shown.join(behaviour, "decision_id", "left").join(lines, ["order_id", "sku"], "left")
              .join(costs, (F.col("cost_sku") == F.col("sku")) & (F.col("valid_from") <= F.col("event_date")), "left"))
    # The unit cost as of the decision's day: the latest supplier cost valid on or before it.
    latest_cost = Window.partitionBy("decision_id").orderBy(F.col("valid_from").desc_nulls_last())
    current = joined.withColumn("_rank", F.row_number().over(latest_cost)).where("_rank = 1")
    revenue = F.col("quantity") * F.col("unit_price_paid_usd")
    bought = F.coalesce(F.col("purchased"), F.lit(False))
    return current.select(
        "decision_id", "variant", "visitor_id",
        F.coalesce("added_to_cart", F.lit(False)).alias("added_to_cart"),
        bought.alias("purchased"),
        F.coalesce("abandoned", F.lit(False)).alias("abandoned"),
        F.when(bought, F.coalesce(revenue, F.lit(0.0))).otherwise(0.0).alias("revenue_usd"),
        F.when(bought, F.coalesce(revenue - F.col("quantity") * F.col("unit_cost_usd"), F.lit(0.0)))
        .otherwise(0.0).alias("margin_usd"),
        (~bought | F.col("quantity").isNotNull()).alias("has_line"),
        (~bought | F.col("quantity").isNull() | F.col("unit_cost_usd").isNotNull()).alias("has_cost"))


def visitor_outcomes(outcomes: DataFrame) -> DataFrame:
    """`decision_outcomes` -> one row per variant and visitor (`readout.frames.VISITOR_COLUMNS`)."""
    return outcomes.groupBy("variant", "visitor_id").agg(
        F.max("added_to_cart").alias("added_to_cart"), F.max("purchased").alias("purchased"),
        F.max("abandoned").alias("abandoned"), F.sum("revenue_usd").alias("revenue_usd"),
        F.sum("margin_usd").alias("margin_usd")).select(*VISITOR_COLUMNS)


def shipping_visitor_outcomes(decisions: DataFrame, clickstream: DataFrame, transactions: DataFrame,
                              experiment: str, unit: str) -> DataFrame:
    """What the visitors quoted a shipping charge by `experiment` did in those sessions.

    A quoted session bought when a purchase event names it, abandoned when an abandon event does; its orders'
    revenue is their lines' quantity x USD price paid, their shipping margin the shipping charged (USD, once per
    order) minus the carrier's invoice. Grain: one row per variant and visitor
    (`readout.shipping.SHIPPING_VISITOR_COLUMNS`)."""
    quoted = (decisions.where((F.col("endpoint") == "shipping") & (F.col("experiment") == experiment)
                              & F.col(unit).isNotNull() & F.col("session_id").isNotNull())
              .select("variant", F.col(unit).alias("visitor_id"), "session_id").distinct())
    behaviour = clickstream.groupBy("session_id").agg(
        F.max(F.col("event_type") == "purchase").alias("purchased"),
        F.max(F.col("event_type") == "abandon").alias("abandoned"))
    orders = transactions.groupBy("session_id", "order_id").agg(
        F.sum(F.col("quantity") * F.col("unit_price_paid_usd")).alias("revenue_usd"),
        (F.first("shipping_charged_usd") - F.first("actual_shipping_cost_usd")).alias("shipping_margin_usd"))
    per_session = orders.groupBy("session_id").agg(F.sum("revenue_usd").alias("revenue_usd"),
                                                   F.sum("shipping_margin_usd").alias("shipping_margin_usd"))
    joined = quoted.join(behaviour, "session_id", "left").join(per_session, "session_id", "left")
    return joined.groupBy("variant", "visitor_id").agg(
        F.coalesce(F.max("purchased"), F.lit(False)).alias("purchased"),
        F.coalesce(F.max("abandoned"), F.lit(False)).alias("abandoned"),
        F.coalesce(F.sum("revenue_usd"), F.lit(0.0)).alias("revenue_usd"),
        F.coalesce(F.sum("shipping_margin_usd"), F.lit(0.0)).alias("shipping_margin_usd"),
    ).select(*SHIPPING_VISITOR_COLUMNS)


def _silver(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    location = table(name).location(settings)
    if not delta_exists(spark, location):
        raise ReadoutError(f"{name} does not exist yet at {location}: promote silver first")
    return read_delta(spark, location)


def experiment_config(settings: Settings, name: str) -> Experiment:
    config = Experiments(settings.api_experiments_file).config
    experiment = next((e for e in config.experiments if e.name == name), None)
    if experiment is None:
        raise ReadoutError(f"no experiment {name!r} in {settings.api_experiments_file}; known: "
                           f"{', '.join(e.name for e in config.experiments) or 'none'}")
    return experiment


def run(spark: SparkSession, settings: Settings, experiment_name: str, log_to_mlflow: bool = True,
        readout_id: str | None = None, now: datetime | None = None, since: datetime | None = None) -> ReadoutResult:
    """Read out `experiment_name` from silver (decisions from `since` on, default all), append to
    gold.experiment_readout, log plots to MLflow."""
    experiment = experiment_config(settings, experiment_name)
    control = control_variant(experiment)
    readout_id, now = readout_id or uuid.uuid4().hex, now or datetime.now(UTC).replace(tzinfo=None)
    if experiment.endpoint == "shipping":
        return _shipping_run(spark, settings, experiment, control, log_to_mlflow, readout_id, now, since)
    decisions, clickstream, transactions, suppliers = (_silver(spark, settings, f"silver.{name}") for name in (
        "decisions", "clickstream", "transactions", "suppliers"))
    if since is not None:
        decisions = decisions.where(F.col("event_time") >= F.lit(since.astimezone(UTC).replace(tzinfo=None)))
    outcomes = decision_outcomes(decisions, clickstream, transactions, suppliers, experiment.name,
                                 experiment.unit).cache()
    gaps = outcomes.agg(F.sum((~F.col("has_line")).cast("int")).alias("no_line"),
                        F.sum((~F.col("has_cost")).cast("int")).alias("no_cost"),
                        F.count(F.lit(1)).alias("decisions")).first()
    if not gaps["decisions"]:
        raise ReadoutError(f"silver.decisions has no pricing decisions of {experiment.name!r} with a {experiment.unit}")
    if gaps["no_line"] or gaps["no_cost"]:
        # Counted, not hidden: revenue (or margin) of those purchases is 0 in this readout.
        log.warning("purchases without their order line or unit cost", extra={
            "experiment": experiment.name, "purchases_without_lines": gaps["no_line"],
            "lines_without_cost": gaps["no_cost"]})
    visitors = visitor_outcomes(outcomes).toPandas()
    outcomes.unpersist()
    rows = readout_rows(visitors, experiment.name, control, {v.name: v.weight for v in experiment.variants},
                        readout_id, now)
    delta.append_rows(spark, delta.records(rows, EXPERIMENT_READOUT), EXPERIMENT_READOUT, table(READOUT_TABLE),
                      settings)
    url = log_run(settings, rows, control) if log_to_mlflow else None
    result = ReadoutResult(readout_id, experiment.name, control, rows, int(gaps["no_line"]), int(gaps["no_cost"]), url)
    log.info("readout written", extra={"readout_id": readout_id, "experiment": experiment.name,
                                       "decisions": gaps["decisions"], "visitors": int(len(visitors)),
                                       "srm_p_value": float(rows["srm_p_value"].iloc[0]), "mlflow_run": url})
    return result


def _shipping_run(spark: SparkSession, settings: Settings, experiment: Experiment, control: str, log_to_mlflow: bool,
                  readout_id: str, now: datetime, since: datetime | None) -> ReadoutResult:
    """`run` for a shipping experiment: the visitors quoted a charge, `readout.shipping`'s metrics."""
    decisions, clickstream, transactions = (_silver(spark, settings, f"silver.{name}") for name in (
        "decisions", "clickstream", "transactions"))
    if since is not None:
        decisions = decisions.where(F.col("event_time") >= F.lit(since.astimezone(UTC).replace(tzinfo=None)))
    visitors = shipping_visitor_outcomes(decisions, clickstream, transactions, experiment.name,
                                         experiment.unit).toPandas()
    if visitors.empty:
        raise ReadoutError(f"silver.decisions has no shipping decisions of {experiment.name!r} with a "
                           f"{experiment.unit} and a session_id")
    rows = readout_rows(visitors, experiment.name, control, {v.name: v.weight for v in experiment.variants},
                        readout_id, now, SHIPPING_METRICS)
    delta.append_rows(spark, delta.records(rows, EXPERIMENT_READOUT), EXPERIMENT_READOUT, table(READOUT_TABLE),
                      settings)
    url = log_run(settings, rows, control) if log_to_mlflow else None
    log.info("readout written", extra={"readout_id": readout_id, "experiment": experiment.name,
                                       "visitors": int(len(visitors)),
                                       "srm_p_value": float(rows["srm_p_value"].iloc[0]), "mlflow_run": url})
    return ReadoutResult(readout_id, experiment.name, control, rows, 0, 0, url)


def plot_readout(rows: pd.DataFrame, control: str, folder: Path) -> list[Path]:
    """Two PNGs: each metric's value per variant, and each metric's lift against `control` with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiment = rows["experiment"].iloc[0]
    metrics = list(dict.fromkeys(rows["metric"]))
    values = rows.pivot(index="metric", columns="variant", values="value").reindex(metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2))
    for ax, metric in zip(axes, metrics, strict=True):
        ax.bar(values.columns, values.loc[metric], color=["#888" if v == control else "#1f77b4" for v in values])
        ax.set_title(metric.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{experiment}: value per variant (control {control})", fontsize=10)
    fig.tight_layout()
    paths = [folder / "metric_values.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    treated = rows[~rows["is_control"]].set_index(["metric", "variant"])
    labels = [f"{m} ({v})" for m, v in treated.index]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.2))
    y = np.arange(len(labels))
    lift = treated["lift"].to_numpy(dtype=float)
    ax.errorbar(lift, y, xerr=[lift - treated["ci_low"].to_numpy(dtype=float),
                               treated["ci_high"].to_numpy(dtype=float) - lift], fmt="o", capsize=4)
    ax.axvline(0, color="#888", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(f"relative lift against {control} (95% delta-method interval)")
    ax.set_title(experiment, fontsize=10)
    fig.tight_layout()
    paths.append(folder / "lift_intervals.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def log_run(settings: Settings, rows: pd.DataFrame, control: str) -> str:
    """An MLflow run of `experiment-readouts` with the figures as metrics and the plots; returns its URL."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment_id = mlflow.set_experiment(MLFLOW_EXPERIMENT).experiment_id
    first = rows.iloc[0]
    with mlflow.start_run(run_name=f"{first['experiment']}-{first['readout_id'][:8]}") as run, \
            tempfile.TemporaryDirectory() as folder:
        mlflow.log_params({"experiment": first["experiment"], "readout_id": first["readout_id"], "control": control})
        figures = {"srm_p_value": float(first["srm_p_value"])}
        for r in rows.itertuples(index=False):
            for name in ("visitors", "value", "lift", "ci_low", "ci_high", "p_value"):
                value = getattr(r, name)
                if value is not None and np.isfinite(value):
                    figures[f"{r.metric}.{r.variant}.{name}"] = float(value)
        mlflow.log_metrics(figures)
        for path in plot_readout(rows, control, Path(folder)):
            mlflow.log_artifact(str(path), "plots")
        run_id = run.info.run_id
    return f"{settings.mlflow_tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def main(args) -> int:
    settings = get_settings()
    try:
        experiment_config(settings, args.experiment)  # before Spark's start-up: fail fast
        result = run(get_spark("readout", settings), settings, args.experiment, log_to_mlflow=not args.no_mlflow)
    except ReadoutError as err:
        print(f"readout: {err}", file=sys.stderr)
        return 1
    print(format_readout(result.rows))
    if result.mlflow_run_url:
        print(f"MLflow run: {result.mlflow_run_url}")
    return 0


def format_readout(rows: pd.DataFrame, true_lift: dict[tuple[str, str], float] | None = None) -> str:
    """A text table: per metric and treatment variant, value, lift [95% CI], p-value (and the true lift,
    keyed by (metric, variant))."""
    # Columns as wide as their longest name (shipping's metrics are longer than pricing's).
    m, v = max(24, rows["metric"].str.len().max() + 2), max(12, rows["variant"].str.len().max() + 2)
    lines = [f"{'metric':<{m}}{'variant':<{v}}{'visitors':>9}{'value':>10}{'lift [95% CI]':>28}{'p':>8}"
             + (f"{'true lift':>11}" if true_lift is not None else "")]
    for r in rows.sort_values(["metric", "is_control"], ascending=[True, False]).itertuples(index=False):
        interval = "" if r.is_control else f"{r.lift:+.1%} [{r.ci_low:+.1%}, {r.ci_high:+.1%}]"
        p = "" if r.is_control else f"{r.p_value:.3f}"
        truth = ("" if true_lift is None or r.is_control else
                 f"{true_lift[r.metric, r.variant]:+.1%}" if (r.metric, r.variant) in true_lift else "n/a")
        lines.append(f"{r.metric:<{m}}{r.variant:<{v}}{r.visitors:>9}{r.value:>10.4f}{interval:>28}{p:>8}"
                     + (f"{truth:>11}" if true_lift is not None else ""))
    srm = float(rows["srm_p_value"].iloc[0])
    lines.append(f"sample ratio: p = {srm:.3g} -> {'MISMATCH: do not trust this readout' if srm < 0.001 else 'ok'}")
    return "\n".join(lines)
