"""Each business rule's Spark form and Python form give the same values on the same hand-written inputs."""

import math
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from features import shipping
from lakehouse.settings import REPO_ROOT
from spark_jobs import monitor
from spark_jobs.score import rate_card_parcels
from training.train import split_holdout
from transforms import rules, standardize

# Typed postal code -> its ZIP. The last three are why the pattern avoids `$` and Python's Unicode classes.
ZIPS = [
    ("02139", "02139"), ("2139", "02139"), (" 02139-1234", "02139"), ("02139-1234 ", "02139"), ("1", "00001"),
    ("abc", None), ("", None), (None, None), ("123456", None), ("02139-123", None), ("-02139", None),
    ("\u00a002139", None),  # a no-break space is not Java's \s
    ("\u0660\u0662\u0661\u0663\u0669", None),  # Arabic-Indic digits are not Java's \d
    ("02139\u2028", "02139"),  # Java's `$` also matched before a final line separator
]


def _none_for_nan(values) -> list:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in np.asarray(values, dtype=float).tolist()]


def test_zip5_spark_and_python_forms_agree(spark):
    typed = spark.createDataFrame([(code,) for code, _ in ZIPS], "postal_code string")

    assert [(code, rules.zip5(code)) for code, _ in ZIPS] == ZIPS
    assertDataFrameEqual(typed.select("postal_code", standardize.zip5(F.col("postal_code"))),
                         [Row(code, rules.zip5(code)) for code, _ in ZIPS])


def test_billable_weight_spark_and_python_forms_agree(spark):
    # actual kg, volume cm3, divisor -> volumetric kg, billable kg
    parcels = [(1.0, 10000.0, 5000, 2.0, 2.0),  # volumetric heavier than actual
               (3.0, 10000.0, 4000, 2.5, 3.0),  # actual heavier
               (2.0, 10000.0, 5000, 2.0, 2.0),  # equal
               (None, 10000.0, 5000, 2.0, None),  # unknown actual weight
               (1.0, None, 5000, None, None)]  # unknown volume
    frame = spark.createDataFrame([(i, *p[:3]) for i, p in enumerate(parcels)],
                                  "i int, kg double, cm3 double, divisor int")
    actual, volume, divisor = (np.array([p[i] for p in parcels], dtype=float) for i in range(3))

    volumetric = rules.volumetric_weight_kg(volume, divisor)
    billable = rules.billable_weight_kg(actual, volumetric)
    spark_volumetric = shipping.volumetric_weight_kg(F.col("cm3"), F.col("divisor"))
    spark_rows = frame.orderBy("i").select(
        spark_volumetric, shipping.billable_weight_kg(F.col("kg"), spark_volumetric)).collect()

    assert [tuple(r) for r in spark_rows] == list(zip(_none_for_nan(volumetric), _none_for_nan(billable), strict=True))
    assert [tuple(r) for r in spark_rows] == [p[3:] for p in parcels]


# One card: breaks 1, 5 and 30 kg at 5, 8 and 20 USD, 0.5 USD per kg above 30 kg, divisor 5000, remote 12 USD.
BREAKS_KG, BASES_USD, PER_KG_OVER, DIVISOR, REMOTE_USD = (1.0, 5.0, 30.0), (5.0, 8.0, 20.0), 0.5, 5000, 12.0
# actual kg, volume cm3, remote, fuel % -> billable kg, break kg, cost USD
PRICED = [
    (1.0, 1000.0, False, 10.0, 1.0, 1.0, 5.0 * 1.1),  # exactly at a break
    (0.4, 1000.0, False, 0.0, 0.4, 1.0, 5.0),  # below the first break, no fuel surcharge
    (1.2, 1000.0, False, 10.0, 1.2, 5.0, 8.0 * 1.1),  # between breaks: the next one up
    (1.0, 10000.0, False, 10.0, 2.0, 5.0, 8.0 * 1.1),  # volumetric (2 kg) heavier than actual
    (30.0, 1000.0, False, 10.0, 30.0, 30.0, 20.0 * 1.1),  # exactly the largest break
    (40.0, 1000.0, False, 12.0, 40.0, 30.0, (20.0 + 0.5 * 10.0) * 1.12),  # above it: per kg beyond
    (2.0, 1000.0, True, 10.0, 2.0, 5.0, 8.0 * 1.1 + 12.0),  # remote surcharge
    (None, 1000.0, False, 10.0, None, None, None),  # unknown weight
]


def test_rate_card_cost_spark_and_python_forms_agree(spark):
    breaks = [(kg, usd) for kg, usd in zip(BREAKS_KG, BASES_USD, strict=True)]
    frame = spark.createDataFrame(
        [(i, kg, cm3, remote, fuel, breaks, PER_KG_OVER, DIVISOR, REMOTE_USD)
         for i, (kg, cm3, remote, fuel, *_) in enumerate(PRICED)],
        "i int, kg double, cm3 double, is_remote boolean, fuel double, "
        "breaks array<struct<weight_break_kg: double, base_rate_usd: double>>, per_kg double, divisor int, "
        "remote_usd double")
    billable = shipping.billable_weight_kg(F.col("kg"), shipping.volumetric_weight_kg(F.col("cm3"), F.col("divisor")))
    brk = shipping.weight_break(F.col("breaks"), billable)
    spark_rows = frame.orderBy("i").select(billable, brk["weight_break_kg"], shipping.rate_card_cost_usd(
        brk["base_rate_usd"], F.element_at("breaks", -1)["weight_break_kg"], billable, F.col("per_kg"), F.col("fuel"),
        F.col("remote_usd"), F.col("is_remote"))).collect()

    actual, volume, remote, fuel = (np.array([p[i] for p in PRICED], dtype=float) for i in range(4))
    breaks_kg, bases_usd = np.array(BREAKS_KG), np.array(BASES_USD)
    python_billable = rules.billable_weight_kg(actual, rules.volumetric_weight_kg(volume, DIVISOR))
    index = rules.weight_break_index(breaks_kg, python_billable)
    python_cost = rules.rate_card_cost_usd(bases_usd[index], breaks_kg[-1], python_billable, PER_KG_OVER, fuel,
                                           REMOTE_USD, remote.astype(bool))
    python_break = np.where(np.isnan(python_billable), np.nan, breaks_kg[index])

    # Exactly equal: both forms do the same arithmetic in the same order.
    assert [tuple(r) for r in spark_rows] == list(zip(
        _none_for_nan(python_billable), _none_for_nan(python_break), _none_for_nan(python_cost), strict=True))
    assertDataFrameEqual(spark_rows, [Row(*p[4:]) for p in PRICED])


def test_score_prices_each_break_as_the_gold_rate_card_does(spark):
    rates = [  # silver.shipping_rates rows in force: two cards, the second with a larger last break
        (carrier, "standard", 3, kg, usd, 0.5, 12.0, 5000, fuel, date(2026, 8, 1))
        for carrier, fuel, card in (("northpost", 10.0, ((1.0, 5.0), (5.0, 8.0), (30.0, 20.0))),
                                    ("southship", 12.5, ((2.0, 6.0), (50.0, 30.0))))
        for kg, usd in card]
    columns = ["carrier", "service_level", "zone", "weight_break_kg", "base_rate_usd", "per_kg_over_usd",
               "remote_surcharge_usd", "volumetric_divisor", "fuel_surcharge_pct", "effective_from"]
    parcels = rate_card_parcels(pd.DataFrame(rates, columns=columns), date(2026, 8, 1))

    cards = shipping.rate_cards(spark.createDataFrame(rates, (
        "carrier string, service_level string, zone int, weight_break_kg double, base_rate_usd double, "
        "per_kg_over_usd double, remote_surcharge_usd double, volumetric_divisor int, fuel_surcharge_pct double, "
        "effective_from date")))
    at_breaks = spark.createDataFrame(
        parcels[["carrier", "service_level", "delivery_zone", "billable_weight_kg", "is_remote"]]).join(
        cards, list(shipping.CARD_KEYS))
    brk = shipping.weight_break(F.col("breaks"), F.col("billable_weight_kg"))
    gold = at_breaks.select("carrier", "billable_weight_kg", shipping.rate_card_cost_usd(
        brk["base_rate_usd"], F.element_at("breaks", -1)["weight_break_kg"], F.col("billable_weight_kg"),
        F.col("per_kg_over_usd"), F.col("fuel_surcharge_pct"), F.col("remote_surcharge_usd"), F.col("is_remote")))

    scored = sorted(zip(parcels["carrier"], parcels["billable_weight_kg"], parcels["rate_card_cost_usd"], strict=True))
    assert sorted(tuple(r) for r in gold.collect()) == scored
    assert [(carrier, kg) for carrier, kg, _ in scored] == [
        ("northpost", 1.0), ("northpost", 5.0), ("northpost", 30.0), ("southship", 2.0), ("southship", 50.0)]
    assert [cost for *_, cost in scored] == pytest.approx([5.0 * 1.1, 8.0 * 1.1, 20.0 * 1.1, 6.0 * 1.125, 30.0 * 1.125])


def test_monitoring_reference_window_is_what_training_fits_on(spark):
    newest = date(2026, 8, 20)
    days = [date(2026, 8, d) for d in (1, 2, 6, 7, 10, 20)]  # gaps: the holdout counts calendar days
    rows = [(day, float(i)) for i, day in enumerate(days)]
    frame = pd.DataFrame(rows, columns=["order_date", "x"])

    reference, latest = monitor._snapshot_frames(spark.createDataFrame(rows, "order_date date, x double"),
                                                 "order_date", ("order_date", "x"))
    train, holdout = split_holdout(frame, "order_date")

    assert rules.holdout_start(newest) == newest - timedelta(days=13) == date(2026, 8, 7)
    assert reference.to_dict("records") == train.to_dict("records") == [
        {"order_date": date(2026, 8, 1), "x": 0.0}, {"order_date": date(2026, 8, 2), "x": 1.0},
        {"order_date": date(2026, 8, 6), "x": 2.0}]
    assert holdout.to_dict("records") == [{"order_date": day, "x": float(i)} for i, day in enumerate(days) if i >= 3]
    assert latest.to_dict("records") == [{"order_date": newest, "x": 5.0}]


def test_the_python_forms_import_without_spark():
    # The API (serving.online_features) imports the rules and stays free of Spark.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, transforms.rules; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))"],
        capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert loaded.stdout.strip() == "[]"
