"""Batch scoring: the champion models -> `gold.prices` and `gold.shipping_rate_cards`.

Prices: every SKU of the latest `gold.pricing_features` day gets the optimizer's price under the
guardrails (the rule-based price when there is no pricing model yet), valid from that day. Rate cards:
for every zone, weight band and service level of each carrier's rate sheet in force that day
(`transforms.rate_sheets.in_force`: the one the API uses), each carrier's expected invoice
of a parcel at the band's upper weight, the cheapest carrier marked. A re-run for the same day replaces
that day's rows (`replaceWhere`), so scoring is idempotent.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import delta
from lakehouse.delta import read_delta
from lakehouse.schemas.scores import PRICES, SHIPPING_RATE_CARDS
from lakehouse.settings import Settings
from lakehouse.tables import table
from pricing.guardrails import DEFAULT_GUARDRAILS, Decision, Guardrails
from pricing.optimizer import optimize
from pricing.rules import rule_based
from training import registry
from training.demand import DemandModel
from training.shipping import ShippingModel
from transforms import rules
from transforms.rate_sheets import in_force

log = logging.getLogger(__name__)


def latest_features(features: DataFrame, products: DataFrame) -> DataFrame:
    """The newest `gold.pricing_features` day, with the list price as a last-resort reference price.

    Grain: one row per SKU of that day.
    """
    newest = features.agg(F.max("as_of_date")).first()[0]
    return (features.where(F.col("as_of_date") == F.lit(newest))
            .join(products.select("sku", "list_price_usd"), "sku", "left"))


def price_table(features: pd.DataFrame, model: DemandModel | None, model_version: str | None,
                rails: Guardrails = DEFAULT_GUARDRAILS, scored_at: datetime | None = None) -> pd.DataFrame:
    """Prices per SKU valid from the features' `as_of_date`; rule-based when `model` is None.

    SKUs without a unit cost cannot be priced safely (no margin floor) and are left out.
    Grain: one row per SKU.
    """
    rows = features.loc[features["unit_cost_usd"].notna()].reset_index(drop=True)
    market = dict(unit_cost=rows["unit_cost_usd"].to_numpy(float),
                  current_price=rows["last_price_usd"].to_numpy(float),
                  competitor_price=rows["competitor_min_price_usd"].to_numpy(float),
                  map_price=rows["map_price_usd"].to_numpy(float), rails=rails)
    control = rule_based(**market)
    decision: Decision = optimize(model.demand_fn(rows), **market) if model is not None else control
    units = model.demand_fn(rows)(decision.prices[:, None])[:, 0] if model is not None else np.full(len(rows), np.nan)
    return pd.DataFrame({
        "sku": rows["sku"], "category": rows["category"], "valid_from": rows["as_of_date"],
        "price_usd": decision.prices, "strategy": decision.strategy, "candidate_price_usd": decision.candidates,
        "guardrails": [[str(r) for r in reasons] for reasons in decision.reasons()],
        "rule_based_price_usd": control.prices, "current_price_usd": market["current_price"],
        "unit_cost_usd": market["unit_cost"], "competitor_min_price_usd": market["competitor_price"],
        "expected_units": units, "expected_profit_usd": (decision.prices - market["unit_cost"]) * units,
        "model_name": registry.PRICING_MODEL if model is not None else None, "model_version": model_version,
        "scored_at": scored_at or datetime.now(UTC),
    })


def rate_card_parcels(rates_in_force: pd.DataFrame, valid_from: date) -> pd.DataFrame:
    """One parcel per carrier, service level, zone and weight break of the rate card in force: billable weight
    at the break, as dense as the carrier's divisor (volumetric = actual), not remote, ordered on `valid_from`.

    Its published price is the rate-card cost (`transforms.rules`) at the break. Grain: one row per card row.
    """
    breaks = rates_in_force["weight_break_kg"].to_numpy(float)
    largest = rates_in_force.groupby(["carrier", "service_level", "zone"])["weight_break_kg"].transform("max")
    return pd.DataFrame({
        "carrier": rates_in_force["carrier"], "service_level": rates_in_force["service_level"],
        "delivery_zone": rates_in_force["zone"].astype(int), "is_remote": False,
        "order_date": pd.Timestamp(valid_from), "billable_weight_kg": breaks, "actual_weight_kg": breaks,
        "volume_cm3": breaks * rates_in_force["volumetric_divisor"].to_numpy(float),
        "rate_card_cost_usd": rules.rate_card_cost_usd(
            rates_in_force["base_rate_usd"].to_numpy(float), largest.to_numpy(float), breaks,
            rates_in_force["per_kg_over_usd"].to_numpy(float), rates_in_force["fuel_surcharge_pct"].to_numpy(float),
            rates_in_force["remote_surcharge_usd"].to_numpy(float), False),
    })


def rate_card_table(parcels: pd.DataFrame, model: ShippingModel, model_version: str,
                    scored_at: datetime | None = None) -> pd.DataFrame:
    """Expected invoice per parcel of `rate_card_parcels`, the cheapest carrier of each zone, band and service
    marked. Grain: one row per zone, weight band, service level and carrier."""
    out = pd.DataFrame({
        "delivery_zone": parcels["delivery_zone"], "weight_band_kg": parcels["billable_weight_kg"],
        "service_level": parcels["service_level"], "carrier": parcels["carrier"],
        "expected_cost_usd": model.expected_cost(parcels), "rate_card_cost_usd": parcels["rate_card_cost_usd"],
    })
    cheapest = out.groupby(["delivery_zone", "weight_band_kg", "service_level"])["expected_cost_usd"].transform("min")
    return out.assign(is_cheapest=out["expected_cost_usd"] == cheapest,
                      valid_from=parcels["order_date"].dt.date, model_name=registry.SHIPPING_MODEL,
                      model_version=model_version, scored_at=scored_at or datetime.now(UTC))


def _champion(name: str):
    try:
        return registry.load(name)
    except MlflowException as error:
        log.warning("no champion model, scoring without it", extra={"model": name, "error": str(error)[:200]})
        return None, None


def _replace_day(spark: SparkSession, settings: Settings, name: str, frame: pd.DataFrame, schema, day: date) -> None:
    delta.replace(spark.createDataFrame(frame, schema), table(name), settings, f"valid_from = DATE'{day.isoformat()}'")


def run(spark: SparkSession, settings: Settings, rails: Guardrails = DEFAULT_GUARDRAILS) -> dict[str, int]:
    """Score both tables for the newest feature day; returns rows written per table."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    features = latest_features(read_delta(spark, table("gold.pricing_features").location(settings)),
                               read_delta(spark, table("silver.products").location(settings))).toPandas()
    day = features["as_of_date"].iloc[0]
    pricing_model, pricing_version = _champion(registry.PRICING_MODEL)
    prices = price_table(features, pricing_model, pricing_version, rails)
    _replace_day(spark, settings, "gold.prices", prices, PRICES, day)
    written = {"gold.prices": len(prices)}

    shipping_model, shipping_version = _champion(registry.SHIPPING_MODEL)
    if shipping_model is not None:
        # A few hundred rows per sheet: chosen in pandas, by the rule the API uses.
        rates = read_delta(spark, table("silver.shipping_rates").location(settings)).toPandas()
        cards = rate_card_table(rate_card_parcels(in_force(rates, day), day), shipping_model, shipping_version)
        _replace_day(spark, settings, "gold.shipping_rate_cards", cards, SHIPPING_RATE_CARDS, day)
        written["gold.shipping_rate_cards"] = len(cards)
    log.info("scored", extra={"valid_from": day.isoformat(), "pricing_version": pricing_version,
                              "shipping_version": shipping_version, "rows": written})
    return written


def step(spark: SparkSession, settings: Settings) -> str:
    """The pipeline step (orchestration.steps)."""
    return ", ".join(f"{rows} rows to {name}" for name, rows in run(spark, settings).items())
