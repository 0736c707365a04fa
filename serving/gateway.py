"""The API gateway: API keys, per-key rate limits and a request size limit.

- Keys: `lh_` + 32 random bytes (urlsafe base64). Only their SHA-256 is stored, in
  `<state>/api_keys.json` (mode 0600); a presented key is hashed and compared with every stored hash
  in constant time (`hmac.compare_digest`). `lakehouse api-key create|list|revoke` manages them; a
  running server sees changes within a second (the file's mtime is checked).
- `GatewayRoute` (the route class of a protected router) checks every request after routing and
  before the endpoint: no key -> 401, unknown or revoked key -> 403, over the key's token bucket ->
  429 with `Retry-After` (seconds), each with a JSON `detail`; `document_api_key` declares the key in
  the OpenAPI document.
- `BodySizeLimit` (ASGI middleware): bodies above the limit -> 413 before the application reads them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.routing import APIRoute

from lakehouse.settings import Settings
from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
KEY_PREFIX = "lh_"
# Name of the key created on the first start, written to <state>/api_key.txt for `make up` to print.
INITIAL_KEY_NAME = "default"
# How often a running server looks at the key file's mtime (revocations apply within this delay).
KEY_FILE_CHECK_S = 1.0

# The OpenAPI security scheme of the protected endpoints.
API_KEY_SCHEME = "APIKeyHeader"
API_KEY_SCHEME_DOC = {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                      "description": "An API key from `lakehouse api-key create --name NAME`."}


class KeyStoreError(ValueError):
    """A key operation that cannot be done (unknown key, duplicate name); the message says why."""


def keys_file(settings: Settings) -> Path:
    return settings.state_dir / "api_keys.json"


def initial_key_file(settings: Settings) -> Path:
    return settings.state_dir / "api_key.txt"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its id, name, SHA-256 and dates; never the key itself."""

    key_id: str
    name: str
    sha256: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyStore:
    """The hashed API keys of one JSON file. Reads reload the file when its mtime changed."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._keys: list[ApiKey] = []
        self._mtime_ns: int | None = None
        self._checked = 0.0
        self._load()

    def _load(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._keys, self._mtime_ns = [], None
            return
        if stat.st_mtime_ns == self._mtime_ns:
            return
        try:
            data = json.loads(self.path.read_text())
            keys = [ApiKey(**entry) for entry in data["keys"]]
        except (ValueError, KeyError, TypeError) as err:
            raise KeyStoreError(f"{self.path} is not a valid API key file ({err!r}); fix or remove it") from err
        self._keys, self._mtime_ns = keys, stat.st_mtime_ns

    def _fresh(self) -> list[ApiKey]:
        now = time.monotonic()
        if now - self._checked >= KEY_FILE_CHECK_S:
            with self._lock:
                try:
                    self._load()
                except KeyStoreError as err:
                    # A damaged file must not lock everyone out of a running server: keep the last good keys.
                    log.error("API key file unreadable; keeping the keys loaded before", extra={"error": str(err)})
                self._checked = now
        return self._keys

    def _save(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"keys": [asdict(k) for k in keys]}, out, indent=2)
        tmp.replace(self.path)
        self._keys, self._mtime_ns, self._checked = keys, self.path.stat().st_mtime_ns, time.monotonic()

    def list(self) -> list[ApiKey]:
        with self._lock:
            self._load()
            return list(self._keys)

    def create(self, name: str) -> tuple[ApiKey, str]:
        """A new key named `name` (unique among active keys): its record and the key, shown only now."""
        if not name.strip():
            raise KeyStoreError("a key needs a non-empty name")
        with self._lock:
            self._load()
            if any(k.name == name and k.active for k in self._keys):
                raise KeyStoreError(f"an active key named {name!r} exists; revoke it first or choose another name")
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            record = ApiKey(key_id=secrets.token_hex(4), name=name, sha256=hash_key(key),
                            created_at=datetime.now(UTC).isoformat(timespec="seconds"))
            self._save([*self._keys, record])
        return record, key

    def revoke(self, key_id_or_name: str) -> ApiKey:
        """Revoke the active key with this id or name; returns the revoked record."""
        with self._lock:
            self._load()
            matches = [k for k in self._keys if k.active and key_id_or_name in (k.key_id, k.name)]
            if not matches:
                raise KeyStoreError(f"no active key with id or name {key_id_or_name!r}; "
                                    "`lakehouse api-key list` shows them")
            revoked = replace(matches[0], revoked_at=datetime.now(UTC).isoformat(timespec="seconds"))
            self._save([revoked if k is matches[0] else k for k in self._keys])
        return revoked

    def find(self, key: str) -> ApiKey | None:
        """The stored record whose hash matches `key` (revoked ones included), else None.

        Every stored hash is compared, in constant time, so the answer's timing does not say how
        much of a hash matched nor where in the file the key is."""
        presented = hash_key(key)
        found = None
        for record in self._fresh():
            if hmac.compare_digest(presented, record.sha256):
                found = record
        return found


def ensure_initial_key(settings: Settings) -> Path | None:
    """On the first start (no key was ever created), create one and write it to `<state>/api_key.txt`
    (mode 0600) for `make up` to print; returns that file, or None when keys exist already."""
    store = KeyStore(keys_file(settings))
    if store.list():
        return None
    _, key = store.create(INITIAL_KEY_NAME)
    path = initial_key_file(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    os.chmod(path, 0o600)  # also when the file existed with wider permissions
    log.info("initial API key created", extra={"file": str(path)})
    return path


class TokenBucket:
    """`rate` tokens per second, at most `burst` held; starts full."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst, self.tokens, self.updated = rate, burst, float(burst), now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per key id."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def wait_s(self, key_id: str) -> float:
        """0.0 if the key may go ahead now, else the seconds until it may."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(self.rate, self.burst, now)
            return bucket.take(now)


class Gateway:
    """Authentication and rate limiting of the `/v1` endpoints (see `GatewayRoute`)."""

    def __init__(self, store: KeyStore, limiter: RateLimiter, metrics: ServingMetrics):
        self.store, self.limiter, self.metrics = store, limiter, metrics

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServingMetrics) -> Gateway:
        return cls(KeyStore(keys_file(settings)),
                   RateLimiter(settings.api_rate_limit_per_s, settings.api_rate_limit_burst), metrics)

    def check(self, key: str | None) -> ApiKey:
        """The caller's key record, or HTTPException 401 / 403 / 429."""
        if not key:
            raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header",
                                headers={"WWW-Authenticate": API_KEY_HEADER})
        record = self.store.find(key)
        if record is None:
            raise HTTPException(403, "unknown API key")
        if not record.active:
            raise HTTPException(403, f"API key {record.key_id} was revoked on {record.revoked_at}")
        wait = self.limiter.wait_s(record.key_id)
        if wait > 0:
            self.metrics.rate_limited.labels(record.key_id).inc()
            retry_after = max(1, math.ceil(wait))
            raise HTTPException(429, f"rate limit of {self.limiter.rate:g} requests/s (burst {self.limiter.burst}) "
                                     f"exceeded for key {record.key_id}; retry after {retry_after} s",
                                headers={"Retry-After": str(retry_after)})
        return record


class GatewayRoute(APIRoute):
    """Route class of the protected routers (`APIRouter(route_class=GatewayRoute)`): the application's
    gateway (`app.state.gateway`) checks the key before FastAPI reads the body; the caller's key record
    is in `request.state.api_key`.

    Not a FastAPI dependency: FastAPI resolves dependencies anew for every request, and the check as a
    dependency (with its security-scheme sub-dependency) cost about a tenth of a price request. After
    routing rather than in a middleware, so that refusals are counted under the route's template.
    """

    def __init__(self, path: str, endpoint, **kwargs):
        super().__init__(path, endpoint, **kwargs)
        self.openapi_extra = {"security": [{API_KEY_SCHEME: []}], **(self.openapi_extra or {})}

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            request.state.api_key = request.app.state.gateway.check(request.headers.get(API_KEY_HEADER))
            return await handler(request)

        return checked


def document_api_key(app: FastAPI) -> FastAPI:
    """Declare the API key's security scheme in `app`'s OpenAPI document (the `GatewayRoute` operations
    refer to it); returns `app`."""
    generate = app.openapi

    def openapi() -> dict:
        schema = generate()  # FastAPI builds the document once and keeps it
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[API_KEY_SCHEME] = API_KEY_SCHEME_DOC
        return schema

    app.openapi = openapi
    return app


class BodySizeLimit:
    """ASGI middleware: 413 for a request body above `max_bytes`, whether announced by Content-Length
    or streamed in chunks (buffered up to the limit, then handed on)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await _json_response(send, 400, f"invalid Content-Length header {length.decode(errors='replace')!r}")
                return
            if announced > self.max_bytes:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b""):
            await self.app(scope, receive, send)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        await _json_response(send, 413, f"request body larger than {self.max_bytes} bytes")


async def _json_response(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
