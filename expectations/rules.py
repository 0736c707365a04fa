"""A quality rule: one Great Expectations expectation and a severity, as Databricks expectations have them.

- `warn`: the result is recorded, the rows are promoted.
- `drop`: rows the expectation counts as unexpected go to `silver.quarantine` with the rule's name.
- `fail`: the promotion of the batch stops and the target table is left as it was.

The expectation is declared once. Great Expectations validates the batch with it; for `drop` rules the
failing rows are selected with a Spark predicate translated from the same class and kwargs, so no
keys are collected on the driver. Only row-level expectations translate; `Rule` refuses a `drop`
rule that does not.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import reduce
from typing import Any

import great_expectations.expectations as gxe
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


# Unexpected rows per expectation class, as Great Expectations counts them: column-map expectations
# other than not-null ignore null values.
_UNEXPECTED: dict[type[gxe.Expectation], Callable[[Column, Mapping[str, Any]], Column]] = {
    gxe.ExpectColumnValuesToNotBeNull: lambda c, kw: c.isNull(),
    gxe.ExpectColumnValuesToBeBetween: lambda c, kw: c.isNotNull() & _between(c, kw),
    gxe.ExpectColumnValuesToBeInSet: lambda c, kw: c.isNotNull() & ~c.isin(list(kw["value_set"])),
    gxe.ExpectColumnValuesToMatchRegex: lambda c, kw: c.isNotNull() & ~c.rlike(kw["regex"]),
}


@dataclass(frozen=True)
class Rule:
    """`name` is what results and quarantined rows carry; `kwargs` are the expectation's arguments."""

    name: str
    severity: Severity
    expectation: type[gxe.Expectation]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity is Severity.DROP and self.expectation not in _UNEXPECTED:
            raise ValueError(f"drop rule {self.name!r}: {self.expectation.__name__} has no row-level "
                             f"Spark predicate; use one of {sorted(e.__name__ for e in _UNEXPECTED)}")

    def to_expectation(self) -> gxe.Expectation:
        """A fresh GE expectation; `meta` carries the rule's name and severity into the results."""
        return self.expectation(**self.kwargs, meta={"rule": self.name, "severity": self.severity.value})

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
