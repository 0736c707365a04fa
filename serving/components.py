"""The components an endpoint works with, built at start-up, and the FastAPI dependency that hands them over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from lakehouse.settings import Settings
from serving.bandit import BanditArm
from serving.carrier_quotes import CarrierQuotes
from serving.decision_log import DecisionLogger
from serving.experiments import Experiments
from serving.gateway import Gateway
from serving.metrics import ServingMetrics
from serving.models import ModelStore
from serving.online_features import LiveFeatureStore, OnlineFeatures
from serving.pricebook import LivePriceBook, PriceBooks


@dataclass(frozen=True)
class Serving:
    """The components an endpoint works with, built at start-up."""

    settings: Settings
    metrics: ServingMetrics
    gateway: Gateway
    experiments: Experiments
    decision_log: DecisionLogger
    features: OnlineFeatures
    models: ModelStore
    prices: PriceBooks
    live_features: LiveFeatureStore
    live_prices: LivePriceBook
    bandit: BanditArm
    carriers: CarrierQuotes | None = None  # None: every carrier priced from its rate card


def serving_of(request: Request) -> Serving:
    """The components of the application serving `request`: for endpoints that take the request anyway
    (the `/v1` POST endpoints log its body), which spares them a dependency to resolve per request."""
    return request.app.state.serving


async def serving(request: Request) -> Serving:
    """FastAPI dependency: the application's components (async: a sync dependency costs a threadpool hop)."""
    return serving_of(request)


# An endpoint parameter `components: Components` receives them.
Components = Annotated[Serving, Depends(serving)]
