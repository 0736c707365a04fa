"""The FastAPI application: gateway, experiments, decision log, online features and metrics.

`create_app()` builds the application; `app` is the one `uvicorn serving.app:app` serves. Start-up
creates the first API key if none exists (`<state>/api_key.txt`), loads the experiments and the
online features and starts the decision log; shutdown flushes the decision log. Endpoints reach
these through a `Components` parameter and protect themselves with a `CallerKey` parameter (or
`Depends(authorize)`); the pricing and shipping endpoints land with the models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response

from lakehouse.settings import Settings, get_settings
from serving.decision_log import DecisionLogger
from serving.experiments import Experiments
from serving.gateway import BodySizeLimit, Gateway, ensure_initial_key
from serving.metrics import MetricsMiddleware, ServingMetrics
from serving.online_features import OnlineFeatures


@dataclass(frozen=True)
class Serving:
    """The components an endpoint works with, built at start-up."""

    settings: Settings
    metrics: ServingMetrics
    gateway: Gateway
    experiments: Experiments
    decision_log: DecisionLogger
    features: OnlineFeatures


def serving(request: Request) -> Serving:
    """FastAPI dependency: the application's components."""
    return request.app.state.serving


# An endpoint parameter `components: Components` receives them.
Components = Annotated[Serving, Depends(serving)]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for `settings` (default: the process settings)."""
    settings = settings or get_settings()
    metrics = ServingMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ensure_initial_key(settings)
        components = Serving(settings, metrics, Gateway.from_settings(settings, metrics),
                             Experiments(settings.api_experiments_file), DecisionLogger(settings, metrics).start(),
                             OnlineFeatures(settings, metrics).start())
        app.state.serving, app.state.gateway = components, components.gateway
        try:
            yield
        finally:
            components.decision_log.close()
            components.features.close()

    app = FastAPI(title="Lakehouse pricing and shipping API", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    # Added last, so outermost: it also counts and times what the size limit refuses.
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def prometheus_metrics() -> Response:
        """Prometheus metrics (names in docs/serving.md)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


app = create_app()
