"""Off-policy evaluation of the pricing model from the lake (`lakehouse ope --experiment NAME`; docs/models.md).

1. `logged_decisions`: the experiment's pricing decisions with a price and a propensity (silver.decisions),
   their reward by the readout's rule (`spark_jobs.readout.decision_outcomes`: margin_usd, the profit of
   the decision's view) and the SKU's features as the batch scoring had them that day (gold.pricing_features
   of the latest as_of_date on or before the decision's day).
2. `policy_estimates`, per pricing model (challenger and champion): its static optimizer's price for each
   decision (`spark_jobs.score.price_table`, the batch scoring's rule), the model's expected profit per view
   at the logged and at that price (the DR reward model), IPS and DR (`readout.ope.evaluate_prices`).
3. One MLflow run of `pricing-ope` with the estimates, the policies and the Delta versions read; the gate
   (`readout.ope.promotable`: the challenger's DR value against the champion's) is recorded on the
   challenger's version, where `lakehouse promote --require-ope` reads it (`training.registry`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.delta import read_delta, table_version
from lakehouse.settings import Settings, get_settings
from lakehouse.spark import get_spark
from lakehouse.tables import table
from readout.ope import PriceEstimates, evaluate_prices, promotable
from spark_jobs.readout import ReadoutError, decision_outcomes, experiment_config
from spark_jobs.score import price_table
from training import registry
from training.demand import DemandModel

log = logging.getLogger(__name__)

MLFLOW_EXPERIMENT = "pricing-ope"
INPUTS = ("silver.decisions", "silver.clickstream", "silver.transactions", "silver.suppliers", "silver.products",
          "gold.pricing_features")


class OpeError(ReadoutError):
    """Nothing to evaluate (missing tables, no logged decisions with propensities, no pricing model)."""


def logged_decisions(decisions: DataFrame, clickstream: DataFrame, transactions: DataFrame, suppliers: DataFrame,
                     features: DataFrame, products: DataFrame, experiment: str, unit: str) -> DataFrame:
    """The decisions to evaluate on. Grain: one row per pricing decision of `experiment` with a price, a
    propensity and the SKU's features (unit cost known): decision_id, variant, strategy, price_usd,
    propensity, reward_usd (its margin_usd) and the gold.pricing_features row in force (with list_price_usd)."""
    outcomes = decision_outcomes(decisions, clickstream, transactions, suppliers, experiment, unit)
    logged = (decisions.where(F.col("propensity").isNotNull() & F.col("price_usd").isNotNull())
              .select("decision_id", "strategy", "price_usd", "propensity", F.col("sku").alias("decision_sku"),
                      "event_date")
              .join(outcomes.select("decision_id", "variant", F.col("margin_usd").alias("reward_usd")), "decision_id"))
    known = features.where(F.col("unit_cost_usd").isNotNull()).join(
        products.select("sku", "list_price_usd"), "sku", "left")
    joined = logged.join(known, (F.col("sku") == F.col("decision_sku")) & (F.col("as_of_date") <= F.col("event_date")))
    # The features in force: the latest day on or before the decision's.
    latest = Window.partitionBy("decision_id").orderBy(F.col("as_of_date").desc())
    return (joined.withColumn("_rank", F.row_number().over(latest)).where("_rank = 1")
            .drop("_rank", "decision_sku", "event_date"))


def policy_estimates(logged: pd.DataFrame, model: DemandModel, version: str) -> PriceEstimates:
    """IPS and DR of the static optimizer on `model` over `logged` (`logged_decisions`, as pandas)."""
    days = logged.drop_duplicates(["sku", "as_of_date"]).reset_index(drop=True)
    prices = price_table(days, model, version)[["sku", "valid_from", "price_usd"]].rename(
        columns={"valid_from": "as_of_date", "price_usd": "candidate_price_usd"})
    rows = logged.merge(prices, on=["sku", "as_of_date"], how="left", validate="many_to_one")
    both = rows[["price_usd", "candidate_price_usd"]].to_numpy(dtype=float)
    profit = (both - rows["unit_cost_usd"].to_numpy(dtype=float)[:, None]) * model.units_per_view(rows, both)
    return evaluate_prices(both[:, 0], both[:, 1], rows["propensity"], rows["reward_usd"], profit[:, 0],
                           profit[:, 1])


@dataclass(frozen=True)
class OpeResult:
    """The estimates of each model version evaluated, the logging policies' own value and the gate (None
    when the challenger is the champion: there is nothing to promote)."""

    experiment: str
    champion: str
    challenger: str
    estimates: dict[str, PriceEstimates]  # by model version
    decisions: int
    passed: bool | None
    run_id: str

    def summary(self) -> str:
        def dr(version: str) -> str:
            estimate = self.estimates[version].dr
            return f"v{version} DR {estimate.value:.4f} ± {estimate.stderr:.4f}"

        logged = self.estimates[self.champion].logged
        line = (f"{self.decisions} decisions of {self.experiment}: logged {logged.value:.4f} ± {logged.stderr:.4f} "
                f"USD per decision; champion {dr(self.champion)}")
        if self.passed is None:
            return line + "; no challenger"
        return line + f"; challenger {dr(self.challenger)}: gate {'passed' if self.passed else 'failed'}"


def _read(spark: SparkSession, settings: Settings) -> tuple[dict[str, DataFrame], dict[str, int]]:
    """Every input at its current Delta version, and the versions (logged with the estimates)."""
    frames, versions = {}, {}
    for name in INPUTS:
        location = table(name).location(settings)
        version = table_version(spark, location)
        if version is None:
            raise OpeError(f"{name} does not exist yet at {location}: run the pipeline and serve traffic first")
        frames[name], versions[name] = read_delta(spark, location, version), version
    return frames, versions


def run(spark: SparkSession, settings: Settings, experiment_name: str) -> OpeResult:
    """Evaluate the pricing champion and challenger on `experiment_name`'s decision log, log to MLflow and
    record the gate on the challenger's version."""
    import mlflow
    from mlflow import MlflowClient

    experiment = experiment_config(settings, experiment_name)
    frames, versions = _read(spark, settings)
    logged = logged_decisions(*(frames[n] for n in INPUTS[:4]), frames["gold.pricing_features"],
                              frames["silver.products"], experiment.name, experiment.unit).toPandas()
    if logged.empty:
        raise OpeError(f"silver.decisions has no priced decisions of {experiment.name!r} with a propensity, a "
                       f"{experiment.unit} and the SKU's features")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient()
    champion = registry.alias_version(client, registry.PRICING_MODEL, registry.CHAMPION)
    if champion is None:
        raise OpeError(f"no {registry.PRICING_MODEL} champion in {settings.mlflow_tracking_uri}: run train first")
    champion = str(champion)  # the registry's version numbers, named as the model versions' tags name them
    challenger = str(registry.alias_version(client, registry.PRICING_MODEL, registry.CHALLENGER) or champion)
    estimates = {version: policy_estimates(logged, registry.load(registry.PRICING_MODEL, alias)[0], version)
                 for version, alias in ((champion, registry.CHAMPION), (challenger, registry.CHALLENGER))}
    passed = (None if challenger == champion else
              promotable(estimates[challenger].dr, estimates[champion].dr, settings.ope_min_lift, settings.ope_z))
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    with mlflow.start_run(run_name=f"{experiment.name}-v{challenger}-vs-v{champion}") as active:
        mlflow.log_params({"experiment": experiment.name, "logged_policy": f"decision log of {experiment.name}",
                           "champion_policy": f"{registry.PRICING_MODEL} v{champion} static optimizer",
                           "challenger_policy": f"{registry.PRICING_MODEL} v{challenger} static optimizer",
                           "min_lift": settings.ope_min_lift, "z": settings.ope_z,
                           **{f"input.{name}.version": v for name, v in versions.items()}})
        metrics = {**estimates[champion].as_metrics("champion"), **estimates[challenger].as_metrics("challenger"),
                   **estimates[champion].logged.as_metrics("logged"),
                   **{f"decisions.{strategy}": float(n) for strategy, n in logged["strategy"].value_counts().items()}}
        if passed is not None:
            metrics["gate_passed"] = float(passed)
        mlflow.log_metrics(metrics)
    result = OpeResult(experiment.name, champion, challenger, estimates, len(logged), passed, active.info.run_id)
    if passed is not None:
        registry.record_off_policy(registry.PRICING_MODEL, challenger, champion, passed, result.summary(),
                                   active.info.run_id)
    log.info("off-policy estimates", extra={"summary": result.summary(), "mlflow_run": active.info.run_id})
    return result


def main(args) -> int:
    settings = get_settings()
    try:
        experiment_config(settings, args.experiment)  # before Spark's start-up: fail fast
        result = run(get_spark("ope", settings), settings, args.experiment)
    except ReadoutError as err:
        print(f"ope: {err}", file=sys.stderr)
        return 1
    print(result.summary())
    print(f"MLflow run: {result.run_id}")
    return 0
