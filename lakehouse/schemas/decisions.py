"""The decision log record, declared once: one per pricing or shipping answer of the API.

The API (`serving.decision_log`) sends each record as a JSON object to Kafka (`<prefix>.decisions`,
keyed by decision_id); the streaming job lands it in `bronze.decisions_stream` with the message
schema derived from this one (`lakehouse.schemas.landing.DECISIONS`), and silver promotion types it
(`lakehouse.schemas.silver.DECISIONS`). Plain Python on purpose: the API imports it without Spark.
Types are Spark SQL type names.
"""

from __future__ import annotations

DECISION_FIELDS: dict[str, str] = {
    "decision_id": "string",  # uuid4, also returned in the API's answer
    "event_time": "string",  # when the decision was made, ISO-8601 in UTC
    "endpoint": "string",  # pricing | shipping
    "customer_id": "string",
    "session_id": "string",
    "experiment": "string",  # null when no experiment applies
    "variant": "string",
    "strategy": "string",  # optimizer | rule_based | live | bandit
    "model_name": "string",  # null for rule_based
    "model_version": "string",
    "sku": "string",  # null for shipping
    "request": "string",  # the request as a JSON string
    "response": "string",  # the answer as a JSON string
    "price_usd": "double",  # pricing
    "estimate_usd": "double",  # shipping
    "guardrails": "array<string>",  # names of the guardrails that changed the answer
    "fallback": "boolean",  # the rule-based fallback answered because a model or features were missing
    "latency_ms": "double",  # time spent answering
    "live_features_as_of": "string",  # pricing, live variant: the as-of of the live features used, ISO-8601 UTC
    "reason_code": "string",  # pricing, live variant: COMPETITOR_MOVE | DEMAND_SURGE | DEMAND_SLUMP; null: daily price
    "propensity": "double",  # pricing: the probability the strategy had of choosing this price (1: deterministic)
    "charge_usd": "double",  # shipping: what the shopper pays for the recommended option (the shipping policy's)
    "policy_version": "string",  # shipping: the shipping policy's version that decided charge_usd
}
