"""The bandit arm of the price route (`strategy: bandit`): Thompson sampling per request over the SKU's price
grid (`pricing.bandit`), inside the guardrails, with the probability of the price chosen (its propensity)
for the decision log.

The state starts, on the first request, from the feature snapshot and the variant's model: every priced
SKU's grid around its current price and the model's add-to-cart rate at each grid price (the prior). It is
written to `<state>/bandit/state.json` every `SAVE_EVERY_S` seconds when it changed and when the API stops,
and read back when it starts: a restart keeps what was learnt. It follows the served model and the
catalogue: SKUs of a new feature snapshot join it with the model's prior, and a new model version (a new
champion) re-anchors every SKU's prior on that model, keeping the evidence. Outcomes (`observe`) come from
the outcome stream (`serving.outcomes`). A SKU the bandit has no open grid price for today is priced by the
variant's daily book instead, with propensity 1.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lakehouse.settings import Settings
from pricing.bandit import (
    DEFAULT_BANDIT,
    GRID_RATIOS,
    NO_ARM,
    BanditConfig,
    BanditState,
    open_arms,
    price_grid,
    thompson,
)
from pricing.guardrails import DEFAULT_GUARDRAILS, Guardrails, apply_guardrails
from serving.online_features import FeatureSnapshot
from serving.pricebook import feature_frame
from training.demand import DemandModel, reference_price

log = logging.getLogger(__name__)

STATE_FILE = ("bandit", "state.json")
SAVE_EVERY_S = 5.0
BANDIT = "bandit"


@dataclass(frozen=True, slots=True)
class BanditPrice:
    """One bandit decision: the price, the reason codes of the guardrails (notes only: a grid price is inside
    them), its propensity and the arm."""

    price_usd: float
    guardrails: tuple[str, ...]
    propensity: float
    arm: int


def _rates(model: DemandModel, frame: pd.DataFrame, grid: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The model's add-to-cart rate at each grid price of the SKUs of `frame` (NaN off the grid)."""
    return np.where(np.isfinite(grid), model.cart_rate(frame, np.where(np.isfinite(grid), grid, anchor[:, None])),
                    np.nan)


def _number(record: dict, name: str) -> float:
    value = record.get(name)
    return float(value) if value is not None and pd.notna(value) else np.nan


class BanditArm:
    """The bandit's state in this process, its persistence and its decisions (thread-safe)."""

    def __init__(self, settings: Settings, config: BanditConfig = DEFAULT_BANDIT,
                 rails: Guardrails = DEFAULT_GUARDRAILS, seed: int | None = None):
        self.path = settings.state_dir.joinpath(*STATE_FILE)
        self.config, self.rails = config, rails
        self.state: BanditState | None = None
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._changed = False
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None
        self._snapshot: FeatureSnapshot | None = None  # the last snapshot whose new SKUs were added

    def start(self) -> BanditArm:
        if self.path.exists():
            self.state = BanditState.load(self.path)
            log.info("bandit state loaded", extra={"path": str(self.path), "skus": len(self.state.skus),
                                                   "views": float(self.state.views.sum())})
        self._saver = threading.Thread(target=self._save_periodically, name="bandit-saver", daemon=True)
        self._saver.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._saver is not None:
            self._saver.join(timeout=10)
        self.save()

    def save(self) -> None:
        """Write the state if it changed since the last write."""
        with self._lock:
            if self.state is None or not self._changed:
                return
            self.state.save(self.path)
            self._changed = False

    def _save_periodically(self) -> None:
        while not self._stop.wait(SAVE_EVERY_S):
            try:
                self.save()
            except OSError as error:  # a full disk must not stop the API: the next save tries again
                log.warning("bandit state not saved", extra={"path": str(self.path), "error": repr(error)})

    def _arms(self, snapshot: FeatureSnapshot, model: DemandModel, known: set[str]):
        """The snapshot's SKUs not in `known` with a unit cost, a price and a grid price the static guardrails
        allow: (features, anchor = current price, unit cost, grid, the model's rate at each grid price)."""
        frame = feature_frame(snapshot)
        if not frame.empty:
            frame = frame.loc[frame["unit_cost_usd"].notna() & ~frame["sku"].isin(known)].reset_index(drop=True)
        if frame.empty:
            none = np.zeros((0, len(GRID_RATIOS)))
            return frame, np.zeros(0), np.zeros(0), none, none
        current = pd.to_numeric(frame["last_price_usd"], errors="coerce").to_numpy(dtype=float)
        anchor = np.where(np.isfinite(current), current, reference_price(frame))
        frame = frame.loc[np.isfinite(anchor)].reset_index(drop=True)
        anchor = anchor[np.isfinite(anchor)]
        cost = frame["unit_cost_usd"].to_numpy(dtype=float)
        grid = price_grid(anchor, cost, pd.to_numeric(frame["competitor_min_price_usd"]).to_numpy(dtype=float),
                          pd.to_numeric(frame["map_price_usd"]).to_numpy(dtype=float), self.rails)
        on_grid = np.isfinite(grid).any(axis=1)  # a SKU the static guardrails leave no grid price is not an arm
        frame, anchor, cost, grid = frame.loc[on_grid].reset_index(drop=True), anchor[on_grid], cost[on_grid], \
            grid[on_grid]
        return frame, anchor, cost, grid, _rates(model, frame, grid, anchor)

    def _current(self, snapshot: FeatureSnapshot, model: DemandModel, version: str | None) -> BanditState:
        """The state, following the served model and the SKUs: started on first use from every SKU of the
        snapshot; then, on each new snapshot, its new SKUs added with the model's prior; and when the model
        version changes (a new champion), the prior of every SKU the snapshot has re-anchored on it, the
        evidence kept (`BanditState.reanchor`)."""
        if self.state is None:
            frame, anchor, cost, grid, prior = self._arms(snapshot, model, set())
            self.state = BanditState.start(frame["sku"].to_numpy(), frame["category"].to_numpy(), cost, anchor,
                                           grid, prior, self.config, version)
            self._snapshot, self._changed = snapshot, True
            log.info("bandit state started from the model", extra={"skus": len(frame), "model_version": version})
            return self.state
        state = self.state
        if snapshot is not self._snapshot:
            frame, anchor, cost, grid, prior = self._arms(snapshot, model, set(state.skus.tolist()))
            if len(frame):
                state.extend(frame["sku"].to_numpy(), frame["category"].to_numpy(), cost, anchor, grid, prior)
                self._changed = True
                log.info("new SKUs join the bandit with the model's prior", extra={
                    "skus": len(frame), "first": frame["sku"].head(5).tolist(), "model_version": version})
            self._snapshot = snapshot
        if version is not None and version != state.model_version:
            frame = feature_frame(snapshot)
            frame = frame.loc[frame["sku"].isin(set(state.skus.tolist()))].reset_index(drop=True)
            rows = state.rows(frame["sku"].to_numpy())
            rates = _rates(model, frame, state.grid[rows], state.anchor[rows]) if len(rows) else state.grid[rows]
            state.reanchor(rows, rates, version)
            self._changed = True
            log.info("bandit prior re-anchored on a new model version, evidence kept", extra={
                "model_version": version, "skus": len(rows), "views_kept": float(state.views.sum())})
        return state

    def decide(self, sku: str, snapshot: FeatureSnapshot, model: DemandModel,
               explore_share: float | None = None, model_version: str | None = None) -> BanditPrice | None:
        """The bandit's price for `sku` now (exploring in `explore_share` of decisions, default the config's),
        or None when it has no open grid price for it. `model` is version `model_version` of the demand
        model: a version other than the state's re-anchors its prior."""
        record = snapshot.pricing.records.get(sku)
        if record is None:
            return None
        with self._lock:
            state = self._current(snapshot, model, model_version)
            try:
                row = state.rows([sku])
            except KeyError:
                return None
            market = (state.unit_cost[row], _number(record, "last_price_usd"),
                      _number(record, "competitor_min_price_usd"), _number(record, "map_price_usd"))
            choice = thompson(state, open_arms(state.grid[row], *market, rails=self.rails), self._rng, rows=row,
                              explore_share=explore_share)
        if choice.arms[0] == NO_ARM:
            return None
        # A grid price is inside the guardrails: they add only their notes (e.g. NO_COMPETITOR).
        reasons = apply_guardrails(choice.prices, *market, rails=self.rails).reasons()[0]
        return BanditPrice(float(choice.prices[0]), tuple(str(r) for r in reasons), float(choice.propensity[0]),
                           int(choice.arms[0]))

    def observe(self, outcomes: pd.DataFrame) -> int:
        """Add outcomes, one row per decision: `sku`, `price_usd`, `views`, `add_to_carts`. Rows whose price
        is not one of the SKU's grid prices (another arm's decisions, a grid since restarted) are left out.
        Returns the rows used."""
        with self._lock:
            if self.state is None or outcomes.empty:
                return 0
            index = {s: i for i, s in enumerate(self.state.skus.tolist())}
            rows = outcomes["sku"].map(index)
            known = rows.notna().to_numpy()
            rows = rows[known].to_numpy(dtype=np.int64)
            prices = outcomes["price_usd"].to_numpy(dtype=float)[known]
            matches = np.isclose(self.state.grid[rows], prices[:, None], rtol=0, atol=0.005)
            on_grid = matches.any(axis=1)
            self.state.observe(rows[on_grid], matches[on_grid].argmax(axis=1),
                               outcomes["views"].to_numpy(dtype=float)[known][on_grid],
                               outcomes["add_to_carts"].to_numpy(dtype=float)[known][on_grid])
            self._changed = self._changed or bool(on_grid.any())
            self.state.posterior()  # refit here, in the outcome stream's thread, not in the next request
            return int(on_grid.sum())
