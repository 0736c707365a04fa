from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.metrics import MetricsMiddleware, ServingMetrics


def requests_total(metrics: ServingMetrics, endpoint: str, status: str, method: str = "GET") -> float | None:
    return metrics.registry.get_sample_value("lakehouse_api_requests_total",
                                             {"endpoint": endpoint, "method": method, "status": status})


def test_requests_are_counted_and_timed_by_route_template_and_status():
    metrics = ServingMetrics()
    app = FastAPI()
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"item": item_id}

    @app.get("/broken")
    def broken() -> dict:
        raise RuntimeError("bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/items/1").status_code == 200
        assert client.get("/items/2").status_code == 200
        assert client.get("/items/x").status_code == 422
        assert client.get("/nowhere/7").status_code == 404
        assert client.get("/broken").status_code == 500

    assert requests_total(metrics, "/items/{item_id}", "200") == 2
    assert requests_total(metrics, "/items/{item_id}", "422") == 1
    assert requests_total(metrics, "unmatched", "404") == 1
    assert requests_total(metrics, "/broken", "500") == 1
    assert metrics.registry.get_sample_value("lakehouse_api_request_duration_seconds_count", {
        "endpoint": "/items/{item_id}", "method": "GET", "status": "200"}) == 2


def test_decisions_fallbacks_and_model_versions():
    metrics = ServingMetrics()

    metrics.record_decision("pricing", "pricing_model_vs_rules", "model", "model")
    metrics.record_decision("pricing", "pricing_model_vs_rules", "model", "model")
    metrics.record_decision("shipping", None, None, "rule_based")
    metrics.record_fallback("pricing", "model_unavailable")
    metrics.set_model_version("pricing_demand", "champion", "3")
    metrics.set_model_version("pricing_demand", "challenger", "4")
    metrics.set_model_version("pricing_demand", "champion", "5")  # the alias moved

    value = metrics.registry.get_sample_value
    assert value("lakehouse_api_decisions_total", {"endpoint": "pricing", "experiment": "pricing_model_vs_rules",
                                                   "variant": "model", "strategy": "model"}) == 2
    assert value("lakehouse_api_decisions_total", {"endpoint": "shipping", "experiment": "", "variant": "",
                                                   "strategy": "rule_based"}) == 1
    assert value("lakehouse_api_fallbacks_total", {"endpoint": "pricing", "reason": "model_unavailable"}) == 1
    loaded = sorted((s.labels["alias"], s.labels["version"], s.value)
                    for m in metrics.model_version.collect() for s in m.samples)
    assert loaded == [("challenger", "4", 1.0), ("champion", "5", 1.0)]
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert b'lakehouse_model_version_loaded{alias="champion",model_name="pricing_demand",version="5"} 1.0' in body
