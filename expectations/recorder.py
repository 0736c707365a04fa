"""The quality recorder, shared by silver and gold: split a validated batch by its drop rules, and shape
what the gates found into `<layer>.quarantine` rows and `ops.quality_results` rows."""

from __future__ import annotations

import json

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.quality import Rule, RuleResult, drop_rule_checks


def split_by_rules(frame: DataFrame, rules: tuple[Rule, ...]) -> tuple[DataFrame, DataFrame]:
    """(rows that pass every drop rule, rows that fail one with `failed_rules`: the rules' names).

    Grain: the input's, split in two."""
    fails, failed_rules = drop_rule_checks(rules)
    return frame.where(~fails), frame.where(fails).withColumn("failed_rules", failed_rules)


def quarantine_rows(dropped: DataFrame, label: tuple[str, str], keys: tuple[str, ...], run_id: str,
                    lineage: tuple[str, ...] = ()) -> DataFrame:
    """Rows a drop rule removed (`split_by_rules`) -> quarantine rows: `label` (column name and value: the
    source or table), the key and the whole row as JSON, the rules' names, the `lineage` columns and the
    run. Grain: one row per removed row."""
    row = [c for c in dropped.columns if c != "failed_rules"]
    return dropped.select(
        F.lit(label[1]).alias(label[0]),
        F.to_json(F.struct(*keys)).alias("record_key"),
        "failed_rules",
        F.to_json(F.struct(*row)).alias("record"),
        *lineage,
        F.lit(run_id).alias("run_id"),
    )


def quality_rows(run_id: str, layer: str, results: list[RuleResult]) -> list[tuple]:
    """Rule results -> `ops.quality_results` rows (lakehouse.schemas.ops.QUALITY_RESULTS), one per result."""
    return [(run_id, f"{layer}.{r.source}", r.rule.name, r.rule.expectation,
             json.dumps(dict(r.rule.kwargs), sort_keys=True), r.rule.severity.value, r.success,
             r.unexpected_count, r.element_count, r.validated_at) for r in results]
