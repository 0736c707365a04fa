from datetime import datetime, timedelta

import pandas as pd
import pytest

from monitoring.checks import metric_rows
from monitoring.rules import BREACH, NO_VALUE, NOT_JUDGED, OK, judge, load_rules, parse_rules

NOW = datetime(2026, 3, 10, 12, 0)
RULES = parse_rules({"rules": [
    {"name": "stale", "check": "freshness", "metric": "age_hours", "subjects": ["gold.*"], "op": ">",
     "threshold": 36, "severity": "error", "summary": "{subject} {value:.0f} h"},
    {"name": "worse", "check": "experiment", "metric": ["conversion_rate.ci_high", "margin_*.ci_high"], "op": "<",
     "threshold": 0,
     "severity": "warning", "summary": "{subject} {metric}"},
    {"name": "quality", "check": "quality", "metric": "failed_rules_fail", "op": ">", "threshold": 0,
     "severity": "critical", "summary": "{subject}"},
]})


def test_the_projects_rules_file_parses():
    names = [rule.name for rule in load_rules()]
    assert "quality_gate_failed" in names and "feature_drift" in names


@pytest.mark.parametrize(("change", "message"), [
    ({"op": "=="}, "op '==' is not one of"),
    ({"severity": "high"}, "severity 'high' is not one of"),
    ({"threshold": None}, "incomplete or malformed"),
])
def test_bad_rules_are_refused_with_their_name(change, message):
    rule = {"name": "r", "check": "c", "metric": "m", "op": ">", "threshold": 1, "severity": "info", "summary": "s"}
    with pytest.raises(ValueError, match=f"alert rule 'r'.*{message}|{message}"):
        parse_rules({"rules": [{**rule, **change}]})


def test_judge_uses_the_first_matching_rule_on_each_subjects_newest_row():
    metrics = metric_rows([
        {"check": "freshness", "subject": "gold.a", "metric": "age_hours", "value": 40.0, "observed_at": NOW},
        {"check": "freshness", "subject": "gold.b", "metric": "age_hours", "value": 3.0, "observed_at": NOW},
        {"check": "freshness", "subject": "bronze.c", "metric": "age_hours", "value": 99.0, "observed_at": NOW},
        {"check": "experiment", "subject": "e/v", "metric": "margin_per_visitor.ci_high", "value": -0.1,
         "observed_at": NOW},
        {"check": "experiment", "subject": "e/v", "metric": "cart_abandonment_rate.ci_high", "value": -0.1,
         "observed_at": NOW},
        {"check": "quality", "subject": "silver.x", "metric": "failed_rules_fail", "value": 2.0,
         "observed_at": NOW - timedelta(days=1)},  # an older run: history, not judged
        {"check": "quality", "subject": "silver.x", "metric": "failed_rules_fail", "value": 0.0, "observed_at": NOW},
        {"check": "quality", "subject": "silver.y", "metric": "failed_rules_fail", "value": None, "observed_at": NOW},
    ])
    judged = judge(metrics, RULES)
    assert list(zip(judged["rule"], judged["status"], judged["threshold"].fillna(-1), strict=True)) == [
        ("stale", BREACH, 36.0), ("stale", OK, 36.0), (None, NOT_JUDGED, -1), ("worse", BREACH, 0.0),
        (None, NOT_JUDGED, -1), (None, NOT_JUDGED, -1), ("quality", OK, 0.0), ("quality", NO_VALUE, 0.0)]
    assert list(judged["severity"].fillna("-")) == ["error", "error", "-", "warning", "-", "-", "critical",
                                                    "critical"]
    assert RULES[0].describe("gold.a", "age_hours", 40.0) == "gold.a 40 h"
    assert isinstance(judged, pd.DataFrame) and len(judged) == len(metrics)
