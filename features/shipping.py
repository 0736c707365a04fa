"""Shipping: one row per order with its parcel, billable weight and the carrier's published rate-card price.

The rate-card price is the baseline the shipping model improves on; the carrier's invoice
(`actual_shipping_cost_usd`) is the label. The rate card is the carrier's, for the order's service
level and delivery zone, in force on the order date (latest `effective_from` <= order date).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.point_in_time import valid_on
from lakehouse.schemas.gold import SHIPPING_FEATURES
from transforms import rules
from transforms.standardize import conform_to

# A rate card applies per carrier, service level and zone; its breaks are rows of silver.shipping_rates.
CARD_KEYS = ("carrier", "service_level", "delivery_zone")


# The rules of billable weight and rate-card cost are stated in transforms.rules; these are their Column forms.
volumetric_weight_kg = rules.volumetric_weight_kg


def billable_weight_kg(actual_kg: Column, volumetric_kg: Column) -> Column:
    """`transforms.rules.billable_weight_kg` on Columns: null if either is unknown (greatest would skip it)."""
    return F.when(actual_kg.isNotNull() & volumetric_kg.isNotNull(), F.greatest(actual_kg, volumetric_kg))


def quarantined_lines(quarantine: DataFrame) -> DataFrame:
    """Order lines silver quarantined (`silver.quarantine`, source transactions): the event ids of
    each order's quarantined lines (`lost_event_ids`). Grain: one row per order_id."""
    return quarantine.where(F.col("source") == "transactions").groupBy(
        F.get_json_object("record", "$.order_id").alias("order_id")).agg(
        F.collect_set(F.get_json_object("record_key", "$.event_id")).alias("lost_event_ids"))


def orders(transactions: DataFrame, products: DataFrame, quarantined: DataFrame) -> DataFrame:
    """Order lines -> shipments: order-level values once, items, USD subtotal, weight and volume.

    Order-level values (time, zone, carrier, service, charge, invoice) repeat on every line; the
    non-null one is taken, so a value nulled on one line is recovered from the others. Weight and
    volume are quantity x the product's measures (no packing). They are null (unknown) when a line's
    product has no measures or a line of the order is missing, because a partial parcel is not the
    parcel the carrier invoiced: missing means quarantined by silver and not promoted since
    (`quarantined` is `quarantined_lines(...)`), or a gap in the line numbers 1..n (a line lost
    before silver; a lost last line cannot be seen). Grain: one row per order with a line in silver.
    """
    measures = products.select("sku", "weight_kg", (F.col("length_cm") * F.col("width_cm") * F.col("height_cm"))
                               .alias("volume_cm3"))
    # Both lookups are small and broadcast: the order lines are shuffled once, by the aggregation.
    lines = (transactions.join(F.broadcast(measures), "sku", "left")
             .join(F.broadcast(quarantined), "order_id", "left"))
    promoted = F.count(F.lit(1))
    # A quarantined line is only missing if no later delivery of it was promoted (it is not among the lines).
    lost = F.coalesce(F.max(F.size("lost_event_ids")), F.lit(0))
    recovered = F.coalesce(F.sum(F.array_contains("lost_event_ids", F.col("event_id")).cast("int")), F.lit(0))
    complete = (F.max("line_number") == promoted) & (lost == recovered)
    quantity = F.col("quantity")

    def parcel_sum(measure: str) -> Column:
        value = quantity * F.col(measure)
        return F.when(complete & (F.count(value) == promoted), F.sum(value))

    return lines.groupBy("order_id").agg(
        F.min("event_time").alias("order_time"),
        F.min("transaction_date").alias("order_date"),
        *[F.max(c).alias(c) for c in ("delivery_zone", "is_remote", "carrier", "service_level",
                                       "shipping_charged_usd", "actual_shipping_cost_usd")],
        F.sum(quantity).cast("long").alias("items"),
        F.sum(quantity * F.col("unit_price_paid_usd")).alias("subtotal_usd"),
        parcel_sum("weight_kg").alias("actual_weight_kg"),
        parcel_sum("volume_cm3").alias("volume_cm3"),
    )


def rate_cards(shipping_rates: DataFrame) -> DataFrame:
    """silver.shipping_rates (one row per weight break) -> one row per rate card version: its breaks
    (weight_break_kg, base_rate_usd) ascending, per-kg rate above the largest break, fuel surcharge %,
    remote surcharge and volumetric divisor (the same on every break of a card).

    Grain: one row per carrier, service level, zone (`delivery_zone`) and `effective_from`.
    """
    return shipping_rates.groupBy(
        "carrier", "service_level", F.col("zone").alias("delivery_zone"), "effective_from").agg(
        F.array_sort(F.collect_list(F.struct("weight_break_kg", "base_rate_usd"))).alias("breaks"),
        *[F.max(c).alias(c) for c in ("per_kg_over_usd", "fuel_surcharge_pct", "remote_surcharge_usd",
                                      "volumetric_divisor")])


def weight_break(breaks: Column, billable_kg: Column) -> Column:
    """The break (struct) a parcel is priced at, as `transforms.rules.weight_break_index`: the smallest >= its
    billable weight, else the largest; null if the weight is."""
    fitting = F.filter(breaks, lambda b: b["weight_break_kg"] >= billable_kg)
    return F.when(billable_kg.isNotNull(),
                  F.when(F.size(fitting) > 0, fitting[0]).otherwise(F.element_at(breaks, -1)))


def rate_card_cost_usd(base_rate_usd: Column, largest_break_kg: Column, billable_kg: Column,
                       per_kg_over_usd: Column, fuel_surcharge_pct: Column, remote_surcharge_usd: Column,
                       is_remote: Column) -> Column:
    """`transforms.rules.rate_card_cost_usd` on Columns, at the break's base rate; null if is_remote is."""
    over_kg = F.greatest(F.lit(0.0), billable_kg - largest_break_kg)
    remote = F.when(is_remote, remote_surcharge_usd).when(~is_remote, F.lit(0.0))
    return rules.rate_card_price(base_rate_usd, over_kg, per_kg_over_usd, fuel_surcharge_pct, remote)


def shipping_features(transactions: DataFrame, products: DataFrame, shipping_rates: DataFrame,
                      quarantine: DataFrame) -> DataFrame:
    """`gold.shipping_features` from silver transactions, products, shipping rates and quarantine.

    No card in force (unknown carrier, zone or date before the first card) leaves the divisor and
    the rate-card columns null. Grain: one row per order.
    """
    card = ("breaks", "per_kg_over_usd", "fuel_surcharge_pct", "remote_surcharge_usd", "volumetric_divisor")
    shipments = valid_on(orders(transactions, products, quarantined_lines(quarantine)), "order_date",
                         rate_cards(shipping_rates), CARD_KEYS, "effective_from", card)
    volumetric = volumetric_weight_kg(F.col("volume_cm3"), F.col("volumetric_divisor"))
    billable = billable_weight_kg(F.col("actual_weight_kg"), volumetric)
    priced = shipments.withColumns({"volumetric_weight_kg": volumetric, "billable_weight_kg": billable,
                                    "_break": weight_break(F.col("breaks"), billable)})
    return conform_to(priced.withColumns({
        "weight_break_kg": F.col("_break.weight_break_kg"),
        "rate_card_cost_usd": rate_card_cost_usd(
            F.col("_break.base_rate_usd"), F.element_at("breaks", -1)["weight_break_kg"], F.col("billable_weight_kg"),
            F.col("per_kg_over_usd"), F.col("fuel_surcharge_pct"), F.col("remote_surcharge_usd"),
            F.col("is_remote")),
    }), SHIPPING_FEATURES)
