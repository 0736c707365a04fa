"""Figures logged with each training run: price-response curves, feature importance, residuals."""

from __future__ import annotations

import lightgbm as lgb
import matplotlib

matplotlib.use("Agg")  # headless: figures are only written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def price_response(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """One panel per SKU: expected units per view and expected profit per view against price.

    `curves` maps a label to (prices, units per view, profit per view).
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for ax, (label, (prices, units, profit)) in zip(axes[0], curves.items(), strict=True):
        ax.plot(prices, units, color="tab:blue")
        ax.set_xlabel("price (USD)")
        ax.set_ylabel("units per view", color="tab:blue")
        ax.set_title(label, fontsize=9)
        twin = ax.twinx()
        twin.plot(prices, profit, color="tab:green")
        twin.axvline(prices[int(np.argmax(profit))], color="tab:green", linestyle=":")
        twin.set_ylabel("profit per view (USD)", color="tab:green")
    fig.tight_layout()
    return fig


def feature_importance(booster: lgb.Booster) -> Figure:
    """Total gain per feature, largest first."""
    gain = booster.feature_importance(importance_type="gain")
    order = np.argsort(gain)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(gain) + 1))
    ax.barh(np.asarray(booster.feature_name())[order], gain[order])
    ax.set_xlabel("total gain")
    fig.tight_layout()
    return fig


def residuals(expected: np.ndarray, actual: np.ndarray, flagged: np.ndarray) -> Figure:
    """Invoice against expected cost, anomalies flagged in red, and the log-ratio histogram."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.scatter(expected[~flagged], actual[~flagged], s=2, alpha=0.4, label="normal")
    left.scatter(expected[flagged], actual[flagged], s=4, color="tab:red", label="flagged anomaly")
    top = float(max(expected.max(), actual.max()))
    left.plot([0, top], [0, top], color="black", linewidth=0.8)
    left.set_xlabel("expected cost (USD)")
    left.set_ylabel("invoiced (USD)")
    left.legend()
    right.hist(np.log(actual / expected), bins=100)
    right.set_xlabel("log(invoiced / expected)")
    fig.tight_layout()
    return fig
