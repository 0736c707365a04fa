"""Quality rules: what a drop rule needs, and the gate error naming every failed rule."""

from datetime import UTC, datetime

import pytest

from lakehouse.quality import UNIQUE, QualityGateError, Rule, RuleResult, Severity
from lakehouse.sources import SUITES


def test_a_drop_rule_needs_an_expectation_with_a_spark_predicate():
    with pytest.raises(ValueError, match="drop rule 'unique_ids'.*ExpectColumnValuesToBeUnique"):
        Rule("unique_ids", Severity.DROP, UNIQUE, {"column": "id"})


def test_the_gate_error_lists_every_failed_rule():
    rule = SUITES["fx_rates"][1]
    error = QualityGateError([RuleResult("fx_rates", rule, False, 3, 10, datetime.now(UTC))])

    assert str(error) == ("quality gate failed: fx_rates.rate_positive (ExpectColumnValuesToBeBetween "
                          "{'column': 'rate_to_usd', 'min_value': 0, 'strict_min': True}: 3 unexpected)")
