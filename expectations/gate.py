"""Runs the suites with Great Expectations (1.x) and renders the Data Docs.

One ephemeral data context per promotion run: a Spark data source with one whole-DataFrame batch
definition per source, one `ValidationDefinition` per source, run once per promotion batch. GE keeps
the validation results of the run in memory; `build_docs` renders them with GE's own site builder
into `<state>/data_docs/` (the index lists the latest run's validations; earlier pages stay on disk).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark.sql import DataFrame

from expectations.rules import Rule, Severity
from expectations.suites import SUITES

log = logging.getLogger(__name__)

_SITE = "lakehouse"
# Counts without example values: sampling unexpected values costs GE one more Spark job per rule, and
# the rows themselves are in silver.quarantine.
_COUNTS_ONLY = {"result_format": "BASIC", "partial_unexpected_count": 0}


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome on one batch; `unexpected_count` is None when GE could not evaluate it."""

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
        listed = "; ".join(f"{f.source}.{f.rule.name} ({f.rule.expectation.__name__} "
                           f"{dict(f.rule.kwargs)}: {f.unexpected_count} unexpected)" for f in failures)
        super().__init__(f"quality gate failed: {listed}")


class QualityGate:
    """Validates promotion batches against `suites` and keeps their results for the Data Docs."""

    def __init__(self, docs_dir: Path, suites: dict[str, tuple[Rule, ...]] = SUITES, layer: str = "silver"):
        # `layer` names the suites after the table they guard: `<layer>.<source>`.
        self.docs_dir, self.suites, self.layer = docs_dir, suites, layer
        self.context = gx.get_context(mode="ephemeral")
        # GE draws a progress bar per validation on stderr; the job logs its own progress.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.context.add_data_docs_site(site_name=_SITE, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        # The jobs cache what they validate as they see fit; GE would otherwise cache every batch again.
        self.data_source = self.context.data_sources.add_spark("promotion_batches", persist=False)
        self._definitions: dict[str, gx.ValidationDefinition] = {}
        self.validated = False

    def _definition(self, source: str) -> gx.ValidationDefinition:
        if source not in self._definitions:
            suite = self.context.suites.add(gx.ExpectationSuite(
                name=f"{self.layer}.{source}", expectations=[r.to_expectation() for r in self.suites[source]]))
            batch = self.data_source.add_dataframe_asset(source).add_batch_definition_whole_dataframe("batch")
            self._definitions[source] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"promote_{source}", data=batch, suite=suite))
        return self._definitions[source]

    def validate(self, source: str, batch: DataFrame) -> list[RuleResult]:
        """Validate one promotion batch with the source's suite (one GE run); one result per rule."""
        by_name = {r.name: r for r in self.suites[source]}
        outcome = self._definition(source).run(batch_parameters={"dataframe": batch}, result_format=_COUNTS_ONLY)
        self.validated = True
        at = datetime.now(UTC)
        results = []
        for r in outcome.results:
            rule = by_name[r.expectation_config.meta["rule"]]
            if r.exception_info and r.exception_info.get("raised_exception"):
                log.error("expectation raised", extra={"source": source, "rule": rule.name,
                                                       "error": r.exception_info.get("exception_message")})
            results.append(RuleResult(source, rule, bool(r.success), r.result.get("unexpected_count"),
                                      r.result.get("element_count"), at))
        return results

    def build_docs(self) -> Path | None:
        """Render the run's validation results as HTML; returns the index page (None if nothing ran)."""
        if not self.validated:
            return None
        self.context.build_data_docs(site_names=[_SITE])
        return self.docs_dir / "index.html"


def gate_failures(results: list[RuleResult]) -> list[RuleResult]:
    """The failed `fail` rules: any one stops the promotion."""
    return [r for r in results if r.rule.severity is Severity.FAIL and not r.success]
