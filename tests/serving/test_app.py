import stat
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from serving.app import Components, create_app
from serving.experiments import Subject
from serving.gateway import GatewayRoute, initial_key_file
from serving.online_features import COLUMNS
from tests.support import CHROMIUM, CHROMIUM_FLAGS, needs_chromium


def test_the_app_starts_its_components_and_stops_them(own_settings, monkeypatch):
    # No MLflow server answers in a unit run: whatever asks it at start-up must give up at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    app = create_app(own_settings)

    router = APIRouter(route_class=GatewayRoute)

    @router.get("/v1/whoami")
    def whoami(request: Request, components: Components) -> dict:
        return {"name": request.state.api_key.name, "features": components.features.versions(),
                # bucket("pricing_model_vs_rules", "2026-11", "C-000001") is 653: the model's half.
                "variant": components.experiments.assign("pricing", Subject(customer_id="C-000001")).variant}

    app.include_router(router)

    with TestClient(app) as client:
        key_file = initial_key_file(own_settings)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/v1/whoami").status_code == 401
        assert client.get("/v1/whoami", headers={"X-API-Key": key}).json() == {
            "name": "default", "features": dict.fromkeys(COLUMNS), "variant": "model"}
        assert client.post("/v1/whoami", content=b"x" * 2048).status_code == 413
        reader = app.state.serving.features.reader._process
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'lakehouse_api_requests_total{endpoint="/v1/whoami",method="GET",status="401"} 1.0' in metrics.text
        assert 'lakehouse_api_requests_total{endpoint="unmatched",method="POST",status="413"} 1.0' in metrics.text
        assert 'lakehouse_online_features_table_version{table="silver.products"} -1.0' in metrics.text
        assert "lakehouse_decision_log_queue_depth 0.0" in metrics.text
        schema = client.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
            "type": "apiKey", "in": "header", "name": "X-API-Key",
            "description": "An API key from `lakehouse api-key create --name NAME`."}
        assert schema["paths"]["/v1/whoami"]["get"]["security"] == [{"APIKeyHeader": []}]
        assert "security" not in schema["paths"]["/healthz"]["get"]

    assert reader.returncode == 0  # shutdown closed the feature reader
    assert app.state.serving.decision_log._closed



@needs_chromium
def test_the_api_docs_render_in_headless_chromium_with_every_outside_request_blocked(served):
    """Swagger UI and ReDoc draw the API's operations from assets the API serves itself: offline, they work."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def loopback_only(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.route("**/*", loopback_only)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            assert page.goto(f"{served}/docs").status == 200
            page.wait_for_selector(".swagger-ui .opblock-summary-path")
            swagger_paths = page.eval_on_selector_all(".opblock-summary-path", "ps => ps.map(p => p.innerText)")
            swagger_title = page.text_content(".swagger-ui .info .title")
            swagger_outside = list(outside)
            assert page.goto(f"{served}/redoc").status == 200
            page.wait_for_selector("[data-section-id^='operation/']")
            redoc_title = page.text_content("h1")
            redoc_operations = page.eval_on_selector_all("[data-section-id^='operation/']", "ops => ops.length")
        finally:
            browser.close()
    # Swagger UI asks nothing outside; ReDoc only its footer's Redocly logo, an image it hides when it fails.
    assert swagger_outside == [] and outside == ["https://cdn.redoc.ly/redoc/logo-mini.svg"] and errors == []
    assert "Lakehouse pricing and shipping API" in swagger_title and "Lakehouse pricing and shipping API" in redoc_title
    assert {"/v1/prices", "/v1/shipping/estimate"} <= {p.replace("\u200b", "") for p in swagger_paths}
    assert redoc_operations == len(swagger_paths)
