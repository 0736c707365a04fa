"""A quality rule: one Great Expectations expectation and a severity, as Databricks expectations have them.

- `warn`: the result is recorded, the rows are promoted.
- `drop`: rows the expectation counts as unexpected go to `silver.quarantine` with the rule's name.
- `fail`: the promotion of the batch stops and the target table is left as it was.

The expectation is declared once, by its Great Expectations class name (so that declaring a rule does not
import Great Expectations, which takes seconds). `expectations.gate` validates the batch with it; for
`drop` rules the failing rows are selected with a Spark predicate translated from the same class and
kwargs, so no keys are collected on the driver. Only row-level expectations translate; `Rule` refuses a
`drop` rule that does not.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import reduce
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F


class Severity(StrEnum):
    WARN = "warn"
    DROP = "drop"
    FAIL = "fail"


def _between(c: Column, kw: Mapping[str, Any]) -> Column:
    inside = F.lit(True)
    if kw.get("min_value") is not None:
        low = F.lit(kw["min_value"])
        inside = inside & ((c > low) if kw.get("strict_min") else (c >= low))
    if kw.get("max_value") is not None:
        high = F.lit(kw["max_value"])
        inside = inside & ((c < high) if kw.get("strict_max") else (c <= high))
    return ~inside


# The expectations the suites use, by Great Expectations class name.
NOT_NULL = "ExpectColumnValuesToNotBeNull"
BETWEEN = "ExpectColumnValuesToBeBetween"
IN_SET = "ExpectColumnValuesToBeInSet"
MATCHES = "ExpectColumnValuesToMatchRegex"
UNIQUE = "ExpectColumnValuesToBeUnique"
COMPOUND_UNIQUE = "ExpectCompoundColumnsToBeUnique"
A_GREATER_THAN_B = "ExpectColumnPairValuesAToBeGreaterThanB"

# Unexpected rows per expectation class, as Great Expectations counts them: column-map expectations
# other than not-null ignore null values.
_UNEXPECTED: dict[str, Callable[[Column, Mapping[str, Any]], Column]] = {
    NOT_NULL: lambda c, kw: c.isNull(),
    BETWEEN: lambda c, kw: c.isNotNull() & _between(c, kw),
    IN_SET: lambda c, kw: c.isNotNull() & ~c.isin(list(kw["value_set"])),
    MATCHES: lambda c, kw: c.isNotNull() & ~c.rlike(kw["regex"]),
}


@dataclass(frozen=True)
class Rule:
    """`name` is what results and quarantined rows carry; `expectation` a Great Expectations class name and
    `kwargs` its arguments."""

    name: str
    severity: Severity
    expectation: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity is Severity.DROP and self.expectation not in _UNEXPECTED:
            raise ValueError(f"drop rule {self.name!r}: {self.expectation} has no row-level "
                             f"Spark predicate; use one of {sorted(_UNEXPECTED)}")

    def unexpected(self) -> Column:
        """True for the rows Great Expectations counts as unexpected for this rule."""
        return _UNEXPECTED[self.expectation](F.col(self.kwargs["column"]), self.kwargs)


def drop_rule_checks(rules: tuple[Rule, ...]) -> tuple[Column, Column]:
    """(true for a row that fails any `drop` rule, the names of the `drop` rules it fails as an array).

    The first is a plain predicate, cheap to test on every row; the second's `array_compact` runs
    interpreted, not compiled, so build it only for the rows the first selects."""
    failing = {r.name: r.unexpected() for r in rules if r.severity is Severity.DROP}
    names = [F.when(fails, F.lit(name)) for name, fails in failing.items()]
    return (reduce(operator.or_, failing.values(), F.lit(False)),
            F.array_compact(F.array(*names)) if names else F.array().cast("array<string>"))


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome on one batch; `unexpected_count` is None when Great Expectations could not evaluate it."""

    source: str
    rule: Rule
    success: bool
    unexpected_count: int | None
    element_count: int | None
    validated_at: datetime


class QualityGateError(RuntimeError):
    """A `fail` rule failed: the promotion of the batch stopped, the target table is unchanged."""

    def __init__(self, failures: list[RuleResult]):
        self.failures = failures
        listed = "; ".join(f"{f.source}.{f.rule.name} ({f.rule.expectation} "
                           f"{dict(f.rule.kwargs)}: {f.unexpected_count} unexpected)" for f in failures)
        super().__init__(f"quality gate failed: {listed}")


def gate_failures(results: list[RuleResult]) -> list[RuleResult]:
    """The failed `fail` rules: any one stops the promotion."""
    return [r for r in results if r.rule.severity is Severity.FAIL and not r.success]
