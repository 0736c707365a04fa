"""Integration: the API as a service of the native stack (a real uvicorn process on a free port)."""

import json
import urllib.request

import pytest

from orchestration.stack import Stack
from serving.gateway import initial_key_file
from tests.support import free_port

pytestmark = pytest.mark.integration


def get(url: str, key: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_stack_runs_the_api_and_stops_it_cleanly(own_settings, settings, stack):
    api = own_settings.model_copy(update={"api_port": free_port(),
                                          "mlflow_tracking_uri": settings.mlflow_tracking_uri})
    service = Stack(api, only=["serving"])
    url = f"http://127.0.0.1:{api.api_port}"
    try:
        service.up()
        assert get(f"{url}/healthz") == (200, '{"status":"ok"}')
        assert initial_key_file(api).read_text().startswith("lh_")
        status, body = get(f"{url}/metrics")
        assert status == 200
        # The stack's health checks and this test asked /healthz: at least twice.
        [healthz] = [line for line in body.splitlines()
                     if line.startswith('lakehouse_api_requests_total{endpoint="/healthz",method="GET",status="200"}')]
        assert float(healthz.split()[-1]) >= 2
        [row] = service.status()
        assert (row["service"], row["healthy"], row["port"]) == ("serving", True, api.api_port)
    finally:
        service.down()

    log = (api.logs_dir / "serving.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert "decision log closed" in messages  # the lifespan's shutdown ran: SIGTERM was a clean stop
    assert "online features loaded" in messages
    assert not any(word in log for word in ("Traceback", "Aborted", "panicked", "Fatal Python error"))
    assert service.status()[0]["pid"] is None
