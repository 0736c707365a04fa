import json
import stat

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from orchestration import cli
from serving import gateway
from serving.gateway import (
    BodySizeLimit,
    Gateway,
    GatewayRoute,
    KeyStore,
    KeyStoreError,
    RateLimiter,
    TokenBucket,
    ensure_initial_key,
    hash_key,
    initial_key_file,
    keys_file,
)
from serving.metrics import ServingMetrics


class Order(BaseModel):
    sku: str = Field(pattern=r"^SKU-\d{6}$")
    quantity: int = Field(ge=1)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(own_settings) -> KeyStore:
    return KeyStore(keys_file(own_settings))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> ServingMetrics:
    return ServingMetrics()


@pytest.fixture
def client(own_settings, store, clock, metrics, monkeypatch):
    """A bare app with the gateway in front of one endpoint; key file changes apply at once."""
    monkeypatch.setattr(gateway, "KEY_FILE_CHECK_S", 0.0)
    app = FastAPI()
    app.state.gateway = Gateway(store, RateLimiter(1.0, 3, clock=clock), metrics)
    app.add_middleware(BodySizeLimit, max_bytes=own_settings.api_max_body_bytes)

    router = APIRouter(route_class=GatewayRoute)

    @router.post("/v1/orders")
    def order(body: Order) -> dict:
        return body.model_dump()

    app.include_router(router)

    with TestClient(app) as test_client:
        yield test_client


def test_keys_are_stored_hashed_in_a_private_file_and_found_again(store, own_settings):
    record, key = store.create("shop-frontend")

    assert key.startswith("lh_") and len(key) == 3 + 43  # 32 random bytes, urlsafe base64
    text = keys_file(own_settings).read_text()
    assert key not in text and key[3:] not in text
    assert json.loads(text)["keys"] == [{"key_id": record.key_id, "name": "shop-frontend", "sha256": hash_key(key),
                                         "created_at": record.created_at, "revoked_at": None}]
    assert stat.S_IMODE(keys_file(own_settings).stat().st_mode) == 0o600
    assert store.find(key) == record
    assert store.find(key + "x") is None
    assert KeyStore(keys_file(own_settings)).find(key) == record  # another process reads the same file


def test_revoke_by_name_or_id_and_refusals(store):
    first, first_key = store.create("a")
    second, _ = store.create("b")

    with pytest.raises(KeyStoreError, match="an active key named 'a' exists"):
        store.create("a")
    with pytest.raises(KeyStoreError, match="non-empty name"):
        store.create("  ")
    revoked = store.revoke("a")
    assert revoked.key_id == first.key_id and revoked.revoked_at is not None
    assert store.find(first_key) == revoked and not revoked.active
    assert store.revoke(second.key_id).name == "b"
    with pytest.raises(KeyStoreError, match="no active key with id or name 'a'"):
        store.revoke("a")
    _, again = store.create("a")  # the name is free once revoked
    assert [k.name for k in store.list() if k.active] == ["a"] and store.find(again).active


def test_a_damaged_key_file_is_named(own_settings):
    keys_file(own_settings).write_text("{not json")
    with pytest.raises(KeyStoreError, match=r"api_keys.json is not a valid API key file"):
        KeyStore(keys_file(own_settings))


def test_first_start_writes_one_key_to_a_private_file_and_later_starts_do_not(own_settings):
    written = ensure_initial_key(own_settings)

    assert written == initial_key_file(own_settings)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    key = written.read_text().strip()
    assert KeyStore(keys_file(own_settings)).find(key).name == "default"
    assert ensure_initial_key(own_settings) is None
    assert written.read_text().strip() == key
    assert len(KeyStore(keys_file(own_settings)).list()) == 1


def test_token_bucket_grants_the_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)

    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token needs 1 / 2 s
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token refilled
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0  # refilled to the burst, not beyond: 2 more, then wait
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_missing_unknown_and_revoked_keys_are_refused(client, store):
    record, key = store.create("shop")
    body = {"sku": "SKU-000001", "quantity": 2}

    missing = client.post("/v1/orders", json=body)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing API key: send it in the X-API-Key header"}
    assert client.post("/v1/orders", json=body, headers={"X-API-Key": "lh_guess"}).json() == {
        "detail": "unknown API key"}
    assert client.post("/v1/orders", json=body, headers={"X-API-Key": "lh_guess"}).status_code == 403
    assert client.post("/v1/orders", json=body, headers={"X-API-Key": key}).json() == body

    revoked = KeyStore(store.path).revoke("shop")  # as `lakehouse api-key revoke` does, from another process
    refused = client.post("/v1/orders", json=body, headers={"X-API-Key": key})
    assert refused.status_code == 403
    assert refused.json() == {"detail": f"API key {record.key_id} was revoked on {revoked.revoked_at}"}


def test_rate_limit_answers_429_with_retry_after_per_key(client, store, clock, metrics):
    first, first_key = store.create("first")
    _, second_key = store.create("second")
    body = {"sku": "SKU-000001", "quantity": 1}

    statuses = [client.post("/v1/orders", json=body, headers={"X-API-Key": first_key}).status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.post("/v1/orders", json=body, headers={"X-API-Key": first_key})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"detail": f"rate limit of 1 requests/s (burst 3) exceeded for key {first.key_id}; "
                                        "retry after 1 s"}
    assert client.post("/v1/orders", json=body, headers={"X-API-Key": second_key}).status_code == 200
    clock.now += 1.0
    assert client.post("/v1/orders", json=body, headers={"X-API-Key": first_key}).status_code == 200
    assert metrics.registry.get_sample_value("lakehouse_api_rate_limited_total", {"key_id": first.key_id}) == 2


def test_oversized_bodies_get_413_announced_or_chunked(client, store):
    _, key = store.create("shop")
    big = json.dumps({"sku": "SKU-000001", "quantity": 1, "note": "x" * 2000}).encode()

    announced = client.post("/v1/orders", content=big, headers={"X-API-Key": key,
                                                                "Content-Type": "application/json"})
    assert announced.status_code == 413
    assert announced.json() == {"detail": "request body larger than 1024 bytes"}

    def chunks():
        yield big[:600]
        yield big[600:]

    chunked = client.post("/v1/orders", content=chunks(), headers={"X-API-Key": key,
                                                                  "Content-Type": "application/json"})
    assert chunked.status_code == 413

    def small_chunks():
        yield b'{"sku": "SKU-000001",'
        yield b' "quantity": 3}'

    assert client.post("/v1/orders", content=small_chunks(), headers={
        "X-API-Key": key, "Content-Type": "application/json"}).json() == {"sku": "SKU-000001", "quantity": 3}


def test_invalid_fields_and_broken_json_are_422_with_a_message(client, store):
    _, key = store.create("shop")

    bad = client.post("/v1/orders", json={"sku": "shoe", "quantity": 0}, headers={"X-API-Key": key})
    assert bad.status_code == 422
    assert [(e["loc"], e["msg"]) for e in bad.json()["detail"]] == [
        (["body", "sku"], "String should match pattern '^SKU-\\d{6}$'"),
        (["body", "quantity"], "Input should be greater than or equal to 1")]
    broken = client.post("/v1/orders", content=b'{"sku": ', headers={"X-API-Key": key,
                                                                     "Content-Type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    bad_length = client.post("/v1/orders", content=b"{}", headers={"X-API-Key": key, "Content-Length": "ten"})
    assert bad_length.status_code == 400


def test_cli_creates_lists_and_revokes_keys(capsys, settings, monkeypatch):
    # The CLI points the root logger at this test's captured stderr; keep the session's logging as it is.
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    assert cli.main(["api-key", "create", "--name", "cli-test"]) == 0
    key = capsys.readouterr().out.strip()
    record = KeyStore(keys_file(settings)).find(key)
    assert record.name == "cli-test" and record.active

    assert cli.main(["api-key", "list"]) == 0
    listed = [k for k in json.loads(capsys.readouterr().out) if k["name"] == "cli-test"]
    assert listed == [{"key_id": record.key_id, "name": "cli-test", "created_at": record.created_at,
                       "revoked_at": None}]
    assert key not in keys_file(settings).read_text()

    assert cli.main(["api-key", "revoke", record.key_id]) == 0
    assert not KeyStore(keys_file(settings)).find(key).active
    assert cli.main(["api-key", "revoke", record.key_id]) == 1
    assert "no active key with id or name" in capsys.readouterr().err
