"""The FastAPI application: gateway, experiments, decision log, online features and metrics.

`create_app()` builds the application; `app` is the one `uvicorn serving.app:app` serves. Start-up
creates the first API key if none exists (`<state>/api_key.txt`), loads the experiments and the
online features (and starts polling the live ones, which reprice the live book) and starts the
decision log; shutdown flushes the decision log and stops the pollers. Endpoints reach
these through a `Components` parameter; a router with `route_class=GatewayRoute` puts its endpoints
behind the gateway. Start-up also loads the registered models by alias (`serving.models`); the
`/v1` endpoints are in `serving.routes`, the status page `/status` in `serving.status`. `/docs` (Swagger UI)
and `/redoc` load their scripts and styles from the API itself (`DOCS_ASSETS`), not from a CDN: they work
on a laptop with no network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from lakehouse.settings import Settings, get_settings
from serving.bandit import BanditArm
from serving.carrier_quotes import CarrierQuotes
from serving.components import Components, Serving
from serving.decision_log import DecisionLogger
from serving.experiments import Experiments
from serving.gateway import BodySizeLimit, Gateway, document_api_key, ensure_initial_key
from serving.metrics import MetricsMiddleware, ServingMetrics
from serving.models import ModelStore
from serving.online_features import LiveFeatureStore, OnlineFeatures
from serving.outcomes import OutcomeStream
from serving.pricebook import LivePriceBook, PriceBooks
from serving.routes import build_router
from serving.status import StatusPage
from training.registry import CHAMPION, PRICING_MODEL, SHIPPING_MODEL

# Swagger UI's and ReDoc's files, from a pinned package that ships them (fastapi-offline), served under this path.
DOCS_ASSETS = "/docs-assets"
TITLE = "Lakehouse pricing and shipping API"


def add_offline_docs(app: FastAPI) -> FastAPI:
    """`/docs`, its OAuth2 redirect and `/redoc`, like FastAPI's own but with every asset served by `app`."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    def url(request: Request, path: str) -> str:
        return request.scope.get("root_path", "").rstrip("/") + path

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=url(request, app.openapi_url), title=f"{TITLE} - Swagger UI",
            oauth2_redirect_url=url(request, "/docs/oauth2-redirect"),
            swagger_js_url=url(request, f"{DOCS_ASSETS}/swagger-ui-bundle.js"),
            swagger_css_url=url(request, f"{DOCS_ASSETS}/swagger-ui.css"),
            swagger_favicon_url=url(request, f"{DOCS_ASSETS}/favicon.png"))

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url=url(request, app.openapi_url), title=f"{TITLE} - ReDoc",
                              redoc_js_url=url(request, f"{DOCS_ASSETS}/redoc.standalone.js"),
                              redoc_favicon_url=url(request, f"{DOCS_ASSETS}/favicon.png"), with_google_fonts=False)

    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for `settings` (default: the process settings)."""
    settings = settings or get_settings()
    metrics = ServingMetrics()
    status_page = StatusPage(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each part closes in the reverse order of its start, even if another fails to start or to close: the
        # decision log first (it sends what its producer holds), the live features before the features whose
        # reader they use.
        with ExitStack() as started:
            def start(part):
                started.callback(part.close)
                return part.start()

            started.callback(status_page.close)
            ensure_initial_key(settings)
            features, books = start(OnlineFeatures(settings, metrics)), PriceBooks()
            models = start(ModelStore(settings, metrics))
            live_features = LiveFeatureStore(settings, features.reader)
            live_prices = LivePriceBook(books, lambda: live_features.snapshot)
            live_features.subscribe(live_prices.on_live_change)
            start(live_features)
            bandit = start(BanditArm(settings))
            start(OutcomeStream(settings, bandit))  # closes before the arm: its last outcomes are saved
            components = Serving(settings, metrics, Gateway.from_settings(settings, metrics),
                                 Experiments(settings.api_experiments_file), start(DecisionLogger(settings, metrics)),
                                 features, models, books, live_features, live_prices, bandit,
                                 CarrierQuotes.from_settings(settings))
            app.state.serving, app.state.gateway = components, components.gateway
            try:
                yield
            finally:
                await components.carriers.aclose()

    app = add_offline_docs(FastAPI(title=TITLE, version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None))
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    # Added last, so outermost: it also counts and times what the size limit refuses.
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "models or features not loaded yet"}})
    def readyz(components: Components) -> JSONResponse:
        """Readiness: the champion models and every online feature table are loaded (versions listed)."""
        models = components.models.versions()
        snapshot = components.features.snapshot
        missing = [f"model {key}" for key in (f"{PRICING_MODEL}@{CHAMPION}", f"{SHIPPING_MODEL}@{CHAMPION}")
                   if models[key] is None]
        missing += [f"table {name}" for name, version in snapshot.versions.items() if version is None]
        body = {"status": "ready" if not missing else "not ready", "missing": missing, "models": models,
                "feature_tables": snapshot.versions, "features_built_at": snapshot.built_at.isoformat()}
        return JSONResponse(body, status_code=200 if not missing else 503)

    app.include_router(build_router())
    app.include_router(status_page.router)

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def prometheus_metrics() -> Response:
        """Prometheus metrics (names in docs/serving.md)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return document_api_key(app)


app = create_app()
