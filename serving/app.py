"""The FastAPI application. Liveness only for now; pricing and shipping endpoints land with the models."""

from fastapi import FastAPI

app = FastAPI(title="Lakehouse pricing and shipping API", version="0.1.0")


@app.get("/healthz", tags=["ops"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}
