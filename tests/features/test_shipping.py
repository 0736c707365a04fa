"""Shipping features on hand-built silver rows: parcels, billable weight and the rate-card price."""

from datetime import date, datetime

from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from features.shipping import billable_weight_kg, shipping_features, volumetric_weight_kg
from lakehouse.schemas.gold import SHIPPING_FEATURES

D1, D10 = date(2026, 8, 1), date(2026, 8, 10)
RATES_SCHEMA = ("carrier string, service_level string, zone int, weight_break_kg double, base_rate_usd double, "
                "per_kg_over_usd double, remote_surcharge_usd double, volumetric_divisor int, "
                "fuel_surcharge_pct double, effective_from date")
LINES_SCHEMA = ("event_id string, order_id string, line_number int, sku string, quantity int, "
                "unit_price_paid_usd double, shipping_charged_usd double, actual_shipping_cost_usd double, "
                "event_time timestamp, transaction_date date, delivery_zone int, is_remote boolean, carrier string, "
                "service_level string")


def test_volumetric_and_billable_weight(spark):
    frame = spark.createDataFrame([(1.0, 10000.0, 5000), (3.0, 10000.0, 4000), (None, 10000.0, 5000),
                                   (1.0, 10000.0, None)], "kg double, cm3 double, divisor int")
    volumetric = volumetric_weight_kg(F.col("cm3"), F.col("divisor"))

    assertDataFrameEqual(frame.select(volumetric.alias("v"), billable_weight_kg(F.col("kg"), volumetric).alias("b")),
                         [Row(2.0, 2.0), Row(2.5, 3.0), Row(2.0, None), Row(None, None)])


def _card(effective: date, zone: int, bases: tuple[float, float, float], per_kg: float, fuel: float) -> list[tuple]:
    return [("northpost", "standard", zone, brk, base, per_kg, 12.0, 5000, fuel, effective)
            for brk, base in zip((1.0, 5.0, 30.0), bases, strict=True)]


def _line(order: str, line: int, sku: str, quantity: int, day: date, zone: int | None = 3, carrier="northpost",
          remote=False) -> tuple:
    return (f"{order}-{line}", order, line, sku, quantity, 10.0, 4.0, 6.5, datetime(day.year, day.month, day.day, 9),
            day, zone, remote if zone else None, carrier, "standard")


def test_each_order_is_one_parcel_priced_with_the_rate_card_in_force_on_its_date(spark):
    rates = spark.createDataFrame(_card(D1, 3, (5.0, 8.0, 20.0), 0.5, 10.0) + _card(D10, 3, (6.0, 9.0, 22.0), 0.6, 12.0)
                                  + _card(D1, 8, (7.0, 10.0, 25.0), 0.5, 10.0), RATES_SCHEMA)
    products = spark.createDataFrame(
        [("P1", 0.5, 10.0, 10.0, 10.0), ("P2", 4.0, 50.0, 40.0, 30.0), ("P3", 40.0, 10.0, 10.0, 10.0),
         ("P4", None, 10.0, 10.0, 10.0)],
        "sku string, weight_kg double, length_cm double, width_cm double, height_cm double")
    d5, d12 = date(2026, 8, 5), date(2026, 8, 12)
    transactions = spark.createDataFrame([
        _line("O1", 1, "P1", 2, d5),  # 1.0 kg, exactly a break
        _line("O2", 1, "P1", 1, d5), _line("O2", 2, "P2", 1, d5, carrier=None),  # volumetric; carrier on line 1
        _line("O3", 1, "P3", 1, d12),  # above the largest break, second card
        _line("O4", 1, "P1", 1, d5, zone=8, remote=True),
        _line("O5", 2, "P1", 1, d5),  # line 1 never reached silver
        _line("O6", 1, "P1", 1, date(2026, 7, 20)),  # before the first card
        _line("O7", 1, "P4", 1, d5),  # a product without weight
        _line("O8", 1, "P1", 1, d5),  # its line 2 is in silver.quarantine
        _line("O9", 1, "P1", 1, d5),  # its line 2 was quarantined once, then promoted
        _line("O9", 2, "P1", 1, d5),
    ], LINES_SCHEMA)
    quarantine = spark.createDataFrame([
        ("transactions", '{"event_id":"O8-2"}', '{"event_id":"O8-2","order_id":"O8","quantity":-1}'),
        ("transactions", '{"event_id":"O9-2"}', '{"event_id":"O9-2","order_id":"O9","quantity":-1}'),
        ("transactions", '{"event_id":"O10-1"}', '{"event_id":"O10-1","order_id":"O10","quantity":-1}'),
        ("products", '{"sku":"O5"}', '{"sku":"O5","order_id":"O5"}'),  # another source: not an order line
    ], "source string, record_key string, record string")

    features = shipping_features(transactions, products, rates, quarantine)

    def row(order, day, zone, remote, items, subtotal, kg, cm3, divisor, volumetric, billable, brk, cost):
        return Row(order, datetime(day.year, day.month, day.day, 9), day, zone, remote, "northpost", "standard",
                   items, subtotal, kg, cm3, divisor, volumetric, billable, brk, cost, 4.0, 6.5)

    assertSchemaEqual(features.schema, SHIPPING_FEATURES)
    assertDataFrameEqual(features, [
        row("O1", d5, 3, False, 2, 20.0, 1.0, 2000.0, 5000, 0.4, 1.0, 1.0, 5.0 * 1.1),
        row("O2", d5, 3, False, 2, 20.0, 4.5, 61000.0, 5000, 12.2, 12.2, 30.0, 20.0 * 1.1),
        row("O3", d12, 3, False, 1, 10.0, 40.0, 1000.0, 5000, 0.2, 40.0, 30.0, (22.0 + 0.6 * 10) * 1.12),
        row("O4", d5, 8, True, 1, 10.0, 0.5, 1000.0, 5000, 0.2, 0.5, 1.0, 7.0 * 1.1 + 12.0),
        row("O5", d5, 3, False, 1, 10.0, None, None, 5000, None, None, None, None),
        row("O6", date(2026, 7, 20), 3, False, 1, 10.0, 0.5, 1000.0, None, None, None, None, None),
        row("O7", d5, 3, False, 1, 10.0, None, 1000.0, 5000, 0.2, None, None, None),
        row("O8", d5, 3, False, 1, 10.0, None, None, 5000, None, None, None, None),
        row("O9", d5, 3, False, 2, 20.0, 1.0, 2000.0, 5000, 0.4, 1.0, 1.0, 5.0 * 1.1),
    ])
