"""Alert rules (`monitoring/rules.yaml`) and judging metric rows against them.

A rule matches metric rows by check and by shell-style patterns on metric (one or a list) and subject; it judges only
the newest row of each (check, subject, metric), so history rows (earlier quality runs) are shown but
never alert. The first matching rule in file order judges a metric.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd
import yaml

RULES_FILE = Path(__file__).with_name("rules.yaml")
OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
SEVERITIES = ("critical", "error", "warning", "info")  # PagerDuty Events v2 payload.severity

# Status of a judged metric row: within its rule, breaching it, no value (the check could not
# measure), or not judged (no rule, or an older observation).
OK, BREACH, NO_VALUE, NOT_JUDGED = "ok", "breach", "no_value", "not_judged"


@dataclass(frozen=True)
class Rule:
    name: str
    check: str
    metrics: tuple[str, ...]  # patterns
    op: str
    threshold: float
    severity: str
    summary: str
    subjects: tuple[str, ...] = ("*",)

    def matches(self, check: str, subject: str, metric: str) -> bool:
        return (check == self.check and any(fnmatchcase(metric, pattern) for pattern in self.metrics)
                and any(fnmatchcase(subject, pattern) for pattern in self.subjects))

    def breached(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    def describe(self, subject: str, metric: str, value: float) -> str:
        return self.summary.format(subject=subject, metric=metric, value=value, threshold=self.threshold)


def parse_rules(document: dict) -> list[Rule]:
    """Rules from the YAML document; a bad rule is refused with its name and the reason."""
    rules = []
    for entry in document.get("rules") or []:
        name = entry.get("name", "<unnamed>")
        try:
            metrics = entry["metric"]
            rule = Rule(name=entry["name"], check=entry["check"],
                        metrics=(metrics,) if isinstance(metrics, str) else tuple(metrics), op=entry["op"],
                        threshold=float(entry["threshold"]), severity=entry["severity"], summary=entry["summary"],
                        subjects=tuple(entry.get("subjects") or ("*",)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"alert rule {name!r} is incomplete or malformed: {err!r}") from err
        if rule.op not in OPERATORS:
            raise ValueError(f"alert rule {name!r}: op {rule.op!r} is not one of {list(OPERATORS)}")
        if rule.severity not in SEVERITIES:
            raise ValueError(f"alert rule {name!r}: severity {rule.severity!r} is not one of {list(SEVERITIES)}")
        rules.append(rule)
    if len({r.name for r in rules}) != len(rules):
        raise ValueError("alert rule names must be unique")
    return rules


def load_rules(path: Path = RULES_FILE) -> list[Rule]:
    return parse_rules(yaml.safe_load(path.read_text()) or {})


def judge(metrics: pd.DataFrame, rules: list[Rule]) -> pd.DataFrame:
    """The metric rows with rule, severity, threshold and status (OK, BREACH, NO_VALUE, NOT_JUDGED).

    Grain: the input's (one row per metric row)."""
    judged = metrics.reset_index(drop=True).copy()
    newest = judged.groupby(["check", "subject", "metric"], dropna=False)["observed_at"].transform("max")
    is_newest = (judged["observed_at"] == newest) | newest.isna()
    names, severities, thresholds, statuses = [], [], [], []
    for row, newest_row in zip(judged.itertuples(index=False), is_newest, strict=True):
        rule = next((r for r in rules if r.matches(row.check, row.subject, row.metric)), None)
        if rule is None or not newest_row:
            names.append(None), severities.append(None), thresholds.append(None), statuses.append(NOT_JUDGED)
            continue
        names.append(rule.name), severities.append(rule.severity), thresholds.append(rule.threshold)
        statuses.append(NO_VALUE if pd.isna(row.value) else BREACH if rule.breached(row.value) else OK)
    judged["rule"], judged["severity"] = names, severities
    judged["threshold"], judged["status"] = pd.Series(thresholds, dtype=float), statuses
    return judged
