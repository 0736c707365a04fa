"""One definition, two uses: Great Expectations and the Spark predicate of a rule count the same rows."""

from expectations.gate import QualityGate, to_expectation
from lakehouse.quality import BETWEEN, IN_SET, MATCHES, NOT_NULL, Rule, Severity
from lakehouse.sources import SUITES

RULES = (
    Rule("qty_at_least_one", Severity.DROP, BETWEEN, {"column": "qty", "min_value": 1}),
    Rule("price_positive", Severity.DROP, BETWEEN,
         {"column": "price", "min_value": 0, "strict_min": True}),
    Rule("price_at_most_100", Severity.WARN, BETWEEN,
         {"column": "price", "max_value": 100, "strict_max": True}),
    Rule("kind_known", Severity.DROP, IN_SET, {"column": "kind", "value_set": ["a", "b"]}),
    Rule("code_shape", Severity.FAIL, MATCHES, {"column": "code", "regex": r"^\d{3}$"}),
    Rule("kind_present", Severity.DROP, NOT_NULL, {"column": "kind"}),
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


def test_every_suite_rule_builds_its_expectation_with_name_and_severity():
    for source, rules in SUITES.items():
        assert len({r.name for r in rules}) == len(rules), source
        for rule in rules:
            expectation = to_expectation(rule)
            assert expectation.meta == {"rule": rule.name, "severity": rule.severity.value}
