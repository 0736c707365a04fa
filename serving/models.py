"""The models the API serves, loaded from the MLflow registry by alias and reloaded when an alias moves.

A background thread asks MLflow every `settings.api_model_refresh_s` which version each alias
(`champion`, `challenger`) of each registered model (`pricing`, `shipping`) names, and loads a version
it has not loaded yet; the swap is one assignment, so a request sees either the old or the new model.
Loaded versions are shared by the aliases that name them and dropped once no alias does, so the store
holds at most one model per (model, alias).
When MLflow is unreachable or an alias is missing, the last loaded model stays (or none: the API then
answers with the rule-based price or the rate card and says so).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient

from lakehouse.settings import Settings
from serving.metrics import ServingMetrics
from training.demand import DemandModel
from training.registry import CHALLENGER, CHAMPION, PRICING_MODEL, SHIPPING_MODEL
from training.shipping import ShippingModel

log = logging.getLogger(__name__)

ALIASES = (CHAMPION, CHALLENGER)
MODEL_NAMES = (PRICING_MODEL, SHIPPING_MODEL)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    alias: str
    version: str
    model: DemandModel | ShippingModel


class ModelStore:
    """The loaded version behind every (model name, alias); see the module docstring."""

    def __init__(self, settings: Settings, metrics: ServingMetrics | None = None):
        self.settings, self.metrics = settings, metrics
        self._client = MlflowClient(settings.mlflow_tracking_uri)
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._by_version: dict[tuple[str, str], DemandModel | ShippingModel] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, name: str, alias: str) -> LoadedModel | None:
        return self._loaded.get((name, alias))

    def versions(self) -> dict[str, str | None]:
        """`<name>@<alias>` -> the version served (None: none loaded)."""
        return {f"{name}@{alias}": (m.version if (m := self.get(name, alias)) else None)
                for name in MODEL_NAMES for alias in ALIASES}

    def refresh(self) -> bool:
        """Load what the aliases name now; True when anything changed. Never raises."""
        changed = False
        for name in MODEL_NAMES:
            for alias in ALIASES:
                try:
                    version = str(self._client.get_model_version_by_alias(name, alias).version)
                except Exception as error:  # noqa: BLE001 (unreachable server or missing alias: keep serving)
                    log.debug("alias not resolved", extra={"model": name, "alias": alias, "error": str(error)[:200]})
                    continue
                current = self.get(name, alias)
                if current is not None and current.version == version:
                    continue
                try:
                    model = self._by_version.get((name, version)) or self._load(name, version)
                except Exception as error:  # noqa: BLE001 (a broken version must not take the API down)
                    log.error("model version failed to load; keeping the previous one",
                              extra={"model": name, "version": version, "error": str(error)[:500]})
                    continue
                self._by_version[(name, version)] = model
                self._loaded[(name, alias)] = LoadedModel(name, alias, version, model)
                changed = True
                log.info("model loaded", extra={"model": name, "alias": alias, "version": version,
                                                "previous": current.version if current else None})
                if self.metrics is not None:
                    self.metrics.set_model_version(name, alias, version)
        if changed:
            # Keep only the versions an alias still names: a moved alias frees the old one.
            self._by_version = {(m.name, m.version): m.model for m in self._loaded.values()}
        return changed

    def _load(self, name: str, version: str) -> DemandModel | ShippingModel:
        mlflow.set_tracking_uri(self.settings.mlflow_tracking_uri)
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model

    def start(self) -> ModelStore:
        """Load in the background: the API starts at once (answering with fallbacks, /readyz 503) even
        while MLflow retries a slow or absent server."""
        self._thread = threading.Thread(target=self._run, name="model-refresh", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        self.refresh()
        while not self._stopping.wait(self.settings.api_model_refresh_s):
            self.refresh()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
