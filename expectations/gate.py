"""Runs the suites with Great Expectations (1.x) and renders the Data Docs.

One ephemeral data context per promotion run: a Spark data source with one whole-DataFrame batch
definition per source, one `ValidationDefinition` per source, run once per promotion batch. GE keeps
the validation results of the run in memory; `build_docs` renders them with GE's own site builder
into `<state>/data_docs/` (the index lists the latest run's validations; earlier pages stay on disk).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark.sql import DataFrame

from lakehouse.quality import Rule, RuleResult
from lakehouse.sources import SUITES

log = logging.getLogger(__name__)

_SITE = "lakehouse"
# Counts without example values: sampling unexpected values costs GE one more Spark job per rule, and
# the rows themselves are in silver.quarantine.
_COUNTS_ONLY = {"result_format": "BASIC", "partial_unexpected_count": 0}


def to_expectation(rule: Rule) -> gxe.Expectation:
    """A fresh GE expectation of the rule; `meta` carries the rule's name and severity into the results."""
    return getattr(gxe, rule.expectation)(**rule.kwargs, meta={"rule": rule.name, "severity": rule.severity.value})


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
                name=f"{self.layer}.{source}", expectations=[to_expectation(r) for r in self.suites[source]]))
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
