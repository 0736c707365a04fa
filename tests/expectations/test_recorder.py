"""The quality recorder: drop-rule splits and quarantine rows on small frames, compared whole."""

from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from expectations.recorder import quarantine_rows, split_by_rules
from lakehouse.quality import Rule, Severity
from lakehouse.sources import SOURCES


def test_drop_rules_split_rows_and_name_every_rule_a_row_fails(spark):
    rules = (Rule("qty_positive", Severity.DROP, SOURCES["transactions"].suite[3].expectation,
                  {"column": "quantity", "min_value": 1}),
             *(r for r in SOURCES["transactions"].suite if r.name == "unit_price_present"))
    frame = spark.createDataFrame([("a", 1, 2.0), ("b", -1, 2.0), ("c", -2, None), ("d", None, 1.0)],
                                  "event_id string, quantity int, unit_price_paid double")

    kept, dropped = split_by_rules(frame, rules)

    assertDataFrameEqual(kept, [Row("a", 1, 2.0), Row("d", None, 1.0)])
    assertDataFrameEqual(dropped, [Row("b", -1, 2.0, ["qty_positive"]),
                                   Row("c", -2, None, ["qty_positive", "unit_price_present"])])


def test_quarantine_rows_carry_the_label_key_whole_row_lineage_and_run(spark):
    dropped = spark.createDataFrame([("a", -1, "b1", ["qty_positive"])],
                                    "event_id string, quantity int, _batch_id string, failed_rules array<string>")
    assertDataFrameEqual(quarantine_rows(dropped, ("source", "orders"), ("event_id",), "run-1", ("_batch_id",)), [
        Row(source="orders", record_key='{"event_id":"a"}', failed_rules=["qty_positive"],
            record='{"event_id":"a","quantity":-1,"_batch_id":"b1"}', _batch_id="b1", run_id="run-1")])
    assertDataFrameEqual(quarantine_rows(dropped, ("table", "pricing_daily"), ("event_id",), "run-2"), [
        Row(table="pricing_daily", record_key='{"event_id":"a"}', failed_rules=["qty_positive"],
            record='{"event_id":"a","quantity":-1,"_batch_id":"b1"}', run_id="run-2")])
