"""Which gold rows a change in silver can move: the earliest date it touches, or a reason to rebuild all.

Gold's tables are functions of days: a pricing_daily row of date D reads the events, quotes and costs of
D; a pricing_features row of as_of_date D + 1 reads daily rows up to D (windows and carried-forward
prices reach forward from a change, never back); a shipping_features row reads its order's lines (one
transaction date per order) and the rate card in force on that date. So a silver row that changed on
date D can only move gold rows dated D or later, and gold recomputes those: the "from" date is the
earliest date among the changed rows. A product is not dated: a new SKU counts from its launch date;
a product whose columns that gold reads changed rebuilds everything (its MAP, category and measures
sit on every row of its history).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

# The date of each silver table's row that places it in gold's days (SQL).
CHANGE_DATES: dict[str, str] = {
    "clickstream": "event_date",
    "transactions": "transaction_date",
    "market_prices": "observed_date",
    "suppliers": "valid_from",
    "shipping_rates": "effective_from",
    # A quarantined order line makes its order incomplete (features.shipping.quarantined_lines).
    "quarantine": "try_cast(get_json_object(record, '$.transaction_date') AS DATE)",
}
# The products columns gold reads (features.pricing, features.shipping, features.demand_profile).
PRODUCT_COLUMNS = ("category", "map_price_usd", "launch_date", "weight_kg", "length_cm", "width_cm", "height_cm")


def changed_rows(source: str, changes: DataFrame) -> DataFrame:
    """A silver table's change feed rows that can move gold: every change of the dated tables, the
    quarantined order lines, and the products whose gold-read columns are new or differ from before.

    `changes` is Delta's change feed (`_change_type`, `_commit_version`). Grain: one row per change,
    with `_date` (null: undated) and `_full` (a reason to rebuild everything, or null)."""
    if source == "products":
        # An update's pre- and post-image differ in a column gold reads, or an insert (a new SKU) or delete.
        images = changes.groupBy("sku", "_commit_version").agg(
            F.count_distinct(F.struct(*PRODUCT_COLUMNS)).alias("_images"),
            F.collect_set("_change_type").alias("_types"),
            F.min("launch_date").alias("_date"))
        inserted = F.array_contains("_types", "insert") & ~F.array_contains("_types", "update_preimage")
        deleted = F.array_contains("_types", "delete")
        return images.where(inserted | deleted | (F.col("_images") > 1)).select(
            "_date", F.when(deleted, F.lit("a product was deleted"))
            .when(~inserted, F.lit("a product's category, MAP, launch date or measures changed"))
            .when(F.col("_date").isNull(), F.lit("a new product has no launch date")).alias("_full"))
    if source == "quarantine":
        changes = changes.where(F.col("source") == "transactions")
    dated = changes.select(F.expr(CHANGE_DATES[source]).alias("_date"))
    return dated.select("_date", F.when(F.col("_date").isNull(), F.lit(f"a changed {source} row has no date"))
                        .alias("_full"))


def rebuild_from(changed: DataFrame) -> tuple[str | None, object]:
    """From `changed_rows` of every silver table gold reads (unioned): (a reason to rebuild everything or
    None, the earliest date to recompute or None when nothing gold reads changed)."""
    found = changed.agg(F.min("_full").alias("full"), F.min("_date").alias("since")).first()
    return found["full"], found["since"]
