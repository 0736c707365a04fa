"""Experiments by feature flags: which strategy (model alias or rules) answers a request.

A YAML file (`settings.api_experiments_file`, default `serving/experiments.yaml`) declares experiments;
each applies to one endpoint, splits one unit (customer_id or session_id) between variants by
weight, may target customers by attributes, and has a kill switch (`enabled`). Assignment is sticky
and needs no state: bucket = SHA-256(name:salt:unit id) mod 10,000, and the variants own consecutive
ranges of buckets in the order listed, `weight` percent each.

The experiment's `default_variant` (the first variant unless named) answers when the experiment is
disabled, the request is not targeted, or it lacks the unit id; an endpoint no experiment applies
to gets `NO_EXPERIMENT` (the champion model). `Experiments` reloads the file when its mtime changes
and keeps the last valid configuration if a new one is invalid.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

BUCKETS = 10_000
# Weights are percentages with at most two decimals: one bucket is 0.01 %.
_BUCKETS_PER_PERCENT = BUCKETS // 100

Strategy = Literal["model", "rule_based", "live", "bandit"]  # live: the model's daily book, repriced live;
# bandit: Thompson sampling over the guardrails' price grid, the model as its prior (serving.bandit)
Endpoint = Literal["pricing", "shipping"]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class ExperimentConfigError(ValueError):
    """The experiments file is invalid; the message names the file and the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    name: Name
    weight: float = Field(ge=0, le=100, description="percent of the units, at most two decimals")
    strategy: Strategy
    model_alias: Literal["champion", "challenger"] | None = None
    # bandit only: the share of the variant's decisions that explore (Thompson draws); the rest take the
    # posterior's best price. Unset: pricing.bandit.BanditConfig's (all of them).
    explore_share: float | None = Field(None, ge=0, le=1)
    # shipping only: the free-shipping threshold (USD) this variant's charges use instead of the shipping
    # policy's (pricing/shipping_policy.yaml). Unset: the policy's.
    free_shipping_threshold_usd: float | None = Field(None, ge=0, le=10_000)

    @model_validator(mode="after")
    def _alias_matches_strategy(self) -> Variant:
        if self.strategy in ("model", "live", "bandit") and self.model_alias is None:
            raise ValueError(f"a {self.strategy!r} variant needs model_alias (champion or challenger)")
        if self.strategy == "rule_based" and self.model_alias is not None:
            raise ValueError("a 'rule_based' variant takes no model_alias")
        if self.strategy != "bandit" and self.explore_share is not None:
            raise ValueError(f"only a 'bandit' variant takes explore_share, not a {self.strategy!r} one")
        if abs(self.weight * _BUCKETS_PER_PERCENT - round(self.weight * _BUCKETS_PER_PERCENT)) > 1e-6:
            raise ValueError(f"weight {self.weight:g} has more than two decimals")
        return self


class Targeting(_Strict):
    """Who is in the experiment: every listed attribute must match one of its values (omitted: anyone)."""

    segment: list[str] | None = None
    country: list[str] | None = None
    region: list[str] | None = None
    zone: list[int] | None = None


class Experiment(_Strict):
    name: Name
    endpoint: Endpoint
    enabled: bool
    unit: Literal["customer_id", "session_id"]
    salt: str = ""
    targeting: Targeting = Targeting()
    variants: list[Variant] = Field(min_length=1)
    default_variant: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        if round(sum(v.weight for v in self.variants) * _BUCKETS_PER_PERCENT) != BUCKETS:
            raise ValueError(f"variant weights add up to {sum(v.weight for v in self.variants):g}, not 100")
        if self.default_variant is not None and self.default_variant not in names:
            raise ValueError(f"default_variant {self.default_variant!r} is not one of the variants {names}")
        if self.endpoint != "shipping":
            moved = [v.name for v in self.variants if v.free_shipping_threshold_usd is not None]
            if moved:
                raise ValueError(f"variants {moved} set free_shipping_threshold_usd, which only a shipping "
                                 f"experiment takes, not a {self.endpoint!r} one")
        return self

    @property
    def default(self) -> Variant:
        return next((v for v in self.variants if v.name == self.default_variant), self.variants[0])


class ExperimentsConfig(_Strict):
    experiments: list[Experiment] = []

    @model_validator(mode="after")
    def _one_per_endpoint(self) -> ExperimentsConfig:
        seen: dict[str, str] = {}
        for e in self.experiments:
            if e.endpoint in seen:
                raise ValueError(f"experiments {seen[e.endpoint]!r} and {e.name!r} both apply to endpoint "
                                 f"{e.endpoint!r}; keep one per endpoint (disable or remove the other)")
            seen[e.endpoint] = e.name
        return self


@dataclass(frozen=True)
class Subject:
    """Who a request is about: the unit ids and the customer attributes targeting can use."""

    customer_id: str | None = None
    session_id: str | None = None
    segment: str | None = None
    country: str | None = None
    region: str | None = None
    zone: int | None = None


@dataclass(frozen=True)
class Assignment:
    """The variant that answers a request and why (`reason`): assigned (by bucket), disabled,
    not_targeted, missing_unit (the unit id is absent) or no_experiment."""

    experiment: str | None
    variant: str | None
    strategy: Strategy
    model_alias: str | None
    reason: str
    bucket: int | None = None
    explore_share: float | None = None  # bandit variants: Variant.explore_share
    free_shipping_threshold_usd: float | None = None  # shipping variants: Variant.free_shipping_threshold_usd


NO_EXPERIMENT = Assignment(None, None, "model", "champion", "no_experiment")


def bucket(experiment: str, salt: str, unit_id: str) -> int:
    """The unit's bucket in [0, BUCKETS): the same for the same experiment, salt and id, everywhere."""
    digest = hashlib.sha256(f"{experiment}:{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def _targeted(targeting: Targeting, subject: Subject) -> bool:
    for attribute in ("segment", "country", "region", "zone"):
        allowed = getattr(targeting, attribute)
        if allowed is not None and getattr(subject, attribute) not in allowed:
            return False
    return True


def assign(experiment: Experiment, subject: Subject) -> Assignment:
    """The variant of `subject` in `experiment` (pure; see the module docstring for the rules)."""
    def answer(variant: Variant, reason: str, unit_bucket: int | None = None) -> Assignment:
        return Assignment(experiment.name, variant.name, variant.strategy, variant.model_alias, reason, unit_bucket,
                          variant.explore_share, variant.free_shipping_threshold_usd)

    if not experiment.enabled:
        return answer(experiment.default, "disabled")
    if not _targeted(experiment.targeting, subject):
        return answer(experiment.default, "not_targeted")
    unit_id = getattr(subject, experiment.unit)
    if not unit_id:
        return answer(experiment.default, "missing_unit")
    unit_bucket = bucket(experiment.name, experiment.salt, unit_id)
    upper = 0
    for variant in experiment.variants:
        upper += round(variant.weight * _BUCKETS_PER_PERCENT)
        if unit_bucket < upper:
            return answer(variant, "assigned", unit_bucket)
    raise AssertionError("weights add up to 100 %, so every bucket has a variant")  # validated at load


def parse_config(text: str, source: str = "<text>") -> ExperimentsConfig:
    """Validate the YAML text of an experiments file; ExperimentConfigError names the bad field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ExperimentConfigError(f"{source}: not valid YAML: {err}") from err
    try:
        return ExperimentsConfig.model_validate(data or {})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                             for e in err.errors())
        raise ExperimentConfigError(f"{source}: {problems}") from err


# Assignments kept in memory (about 1 KB each); all are dropped when there are more.
ASSIGNMENTS_KEPT = 100_000


class Experiments:
    """The experiments of one file, reloaded when the file's mtime changes (checked at most every
    `check_interval_s` by `assign`: a stat per request cost a tenth of the price request's own time)."""

    def __init__(self, path: Path, check_interval_s: float = 1.0):
        self.path, self.check_interval_s = path, check_interval_s
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._mtime_ns = os.stat(path).st_mtime_ns if path.exists() else None
        # The first load raises: a server must not start on a broken configuration.
        self._config = self._read()
        self._by_endpoint = _index(self._config)
        self._assigned: dict[tuple[str, Subject], Assignment] = {}

    def _read(self) -> ExperimentsConfig:
        try:
            text = self.path.read_text()
        except OSError as err:
            raise ExperimentConfigError(f"{self.path}: cannot read the experiments file: {err}") from err
        return parse_config(text, str(self.path))

    @property
    def config(self) -> ExperimentsConfig:
        self._reload_if_changed()
        return self._config

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval_s:
            return
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime_ns:
            return
        with self._lock:
            if mtime == self._mtime_ns:
                return
            self._mtime_ns = mtime
            try:
                config = self._read()
            except ExperimentConfigError as err:
                log.error("experiments file invalid; keeping the previous configuration", extra={"error": str(err)})
                return
            self._config, self._by_endpoint, self._assigned = config, _index(config), {}
            log.info("experiments reloaded", extra={"file": str(self.path),
                                                    "experiments": [e.name for e in config.experiments]})

    def assign(self, endpoint: str, subject: Subject) -> Assignment:
        """The variant answering `subject` on `endpoint` (NO_EXPERIMENT when none applies). Kept per
        subject until the configuration changes: a shopper asks for many prices, and the assignment
        (targeting, a SHA-256, the variant) was a fifth of a price request's own work."""
        self._reload_if_changed()
        key = (endpoint, subject)
        found = self._assigned.get(key)
        if found is None:
            experiment = self._by_endpoint.get(endpoint)
            found = NO_EXPERIMENT if experiment is None else assign(experiment, subject)
            if len(self._assigned) >= ASSIGNMENTS_KEPT:
                self._assigned = {}
            self._assigned[key] = found
        return found


def _index(config: ExperimentsConfig) -> dict[str, Experiment]:
    return {e.endpoint: e for e in config.experiments}
