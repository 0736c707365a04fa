"""One definition, two uses: Great Expectations and the Spark predicate of a rule count the same rows."""

from datetime import UTC, datetime

import great_expectations.expectations as gxe
import pytest

from expectations.gate import QualityGate, QualityGateError, RuleResult
from expectations.rules import Rule, Severity
from expectations.suites import SUITES

RULES = (
    Rule("qty_at_least_one", Severity.DROP, gxe.ExpectColumnValuesToBeBetween, {"column": "qty", "min_value": 1}),
    Rule("price_positive", Severity.DROP, gxe.ExpectColumnValuesToBeBetween,
         {"column": "price", "min_value": 0, "strict_min": True}),
    Rule("price_at_most_100", Severity.WARN, gxe.ExpectColumnValuesToBeBetween,
         {"column": "price", "max_value": 100, "strict_max": True}),
    Rule("kind_known", Severity.DROP, gxe.ExpectColumnValuesToBeInSet, {"column": "kind", "value_set": ["a", "b"]}),
    Rule("code_shape", Severity.FAIL, gxe.ExpectColumnValuesToMatchRegex, {"column": "code", "regex": r"^\d{3}$"}),
    Rule("kind_present", Severity.DROP, gxe.ExpectColumnValuesToNotBeNull, {"column": "kind"}),
)


def test_great_expectations_and_the_spark_predicates_count_the_same_rows(spark, tmp_path):
    frame = spark.createDataFrame([
        (1, 5.0, "a", "123"), (0, 0.0, "b", "12"), (-3, -1.0, "c", "1234"), (None, None, None, None),
        (2, 100.0, "a", "x12"), (4, 250.0, "z", "999"),
    ], "qty int, price double, kind string, code string")
    gate = QualityGate(tmp_path / "docs", suites={"things": RULES})

    results = gate.validate("things", frame)

    ge_counts = {r.rule.name: r.unexpected_count for r in results}
    spark_counts = {rule.name: frame.where(rule.unexpected()).count() for rule in RULES}
    assert ge_counts == spark_counts == {"qty_at_least_one": 2, "price_positive": 2, "price_at_most_100": 2,
                                         "kind_known": 2, "code_shape": 3, "kind_present": 1}
    assert gate.build_docs().exists()


def test_a_drop_rule_needs_an_expectation_with_a_spark_predicate():
    with pytest.raises(ValueError, match="drop rule 'unique_ids'.*ExpectColumnValuesToBeUnique"):
        Rule("unique_ids", Severity.DROP, gxe.ExpectColumnValuesToBeUnique, {"column": "id"})


def test_every_suite_rule_builds_its_expectation_with_name_and_severity():
    for source, rules in SUITES.items():
        assert len({r.name for r in rules}) == len(rules), source
        for rule in rules:
            expectation = rule.to_expectation()
            assert expectation.meta == {"rule": rule.name, "severity": rule.severity.value}


def test_the_gate_error_lists_every_failed_rule():
    rule = SUITES["fx_rates"][1]
    error = QualityGateError([RuleResult("fx_rates", rule, False, 3, 10, datetime.now(UTC))])

    assert str(error) == ("quality gate failed: fx_rates.rate_positive (ExpectColumnValuesToBeBetween "
                          "{'column': 'rate_to_usd', 'min_value': 0, 'strict_min': True}: 3 unexpected)")
