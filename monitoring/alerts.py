"""Alerts: judged metrics -> PagerDuty Events v2 trigger/resolve events, deduplicated against the alert log,
sent by HTTP POST to the webhook, every event logged with its outcome.

An alert is one rule and subject (dedup key `lakehouse/<rule>/<subject>`). It is open while its latest
logged event is a `trigger` that was delivered (or not sent because no webhook is configured): an open
alert is not sent again, and gets a `resolve` once its rule judges the subject OK. A trigger whose POST
failed is sent again by the next run. A subject the run could not measure changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

import httpx
import pandas as pd

from monitoring.rules import BREACH, OK, Rule

log = logging.getLogger(__name__)

TRIGGER, RESOLVE = "trigger", "resolve"
# Outcome of one event: the webhook answered 2xx; it failed (error or other status: retried next run);
# no webhook URL is configured (recorded, not retried: there is nowhere to send it).
DELIVERED, FAILED, NOT_SENT = "delivered", "failed", "not_sent"
ALERT_LOG_COLUMNS = ("run_id", "sent_at", "dedup_key", "rule", "subject", "action", "severity", "summary",
                     "value", "threshold", "outcome", "http_status", "error", "payload")


def dedup_key(rule: str, subject: str) -> str:
    return f"lakehouse/{rule}/{subject}"


@dataclass(frozen=True)
class AlertEvent:
    action: str
    dedup_key: str
    rule: str
    subject: str
    severity: str
    summary: str
    value: float | None
    threshold: float
    body: dict


def pagerduty_body(routing_key: str, action: str, key: str, summary: str, source: str, severity: str,
                   rule: Rule, subject: str, metric: str, value: float | None, detail: str | None) -> dict:
    """The Events v2 body: trigger with payload (summary, source, severity, component, class,
    custom_details), or resolve (routing key, action and dedup key only)."""
    body = {"routing_key": routing_key, "event_action": action, "dedup_key": key}
    if action == TRIGGER:
        body["payload"] = {
            "summary": summary[:1024],  # PagerDuty's limit
            "source": source, "severity": severity, "component": subject, "group": rule.check, "class": rule.name,
            "custom_details": {"rule": rule.name, "check": rule.check, "subject": subject, "metric": metric,
                               "value": value, "op": rule.op, "threshold": rule.threshold,
                               "detail": json.loads(detail) if detail else None},
        }
    return body


def alert_states(alert_log: pd.DataFrame) -> dict[str, str]:
    """dedup key -> 'open' (latest event a trigger delivered or not sent), 'pending' (latest a trigger
    whose POST failed) or 'resolved'. Grain: one entry per dedup key ever logged."""
    if alert_log.empty:
        return {}
    latest = alert_log.sort_values("sent_at").groupby("dedup_key").tail(1)
    return {r.dedup_key: ("resolved" if r.action == RESOLVE else "pending" if r.outcome == FAILED else "open")
            for r in latest.itertuples(index=False)}


def plan_events(judged: pd.DataFrame, rules: list[Rule], states: dict[str, str], routing_key: str,
                source: str) -> list[AlertEvent]:
    """The events this run sends: a trigger per breached rule and subject not already open, a resolve
    per open (or pending) one now judged OK on every metric. Grain: one event per dedup key at most."""
    by_name = {r.name: r for r in rules}
    events = []
    judged_rows = judged.loc[judged["status"].isin([BREACH, OK])]
    for (rule_name, subject), rows in judged_rows.groupby(["rule", "subject"], sort=True):
        rule, key = by_name[rule_name], dedup_key(rule_name, subject)
        breaches = rows.loc[rows["status"] == BREACH]
        state = states.get(key, "resolved")
        if len(breaches) and state != "open":
            row = breaches.iloc[0]
            summary = rule.describe(subject, row["metric"], row["value"])
            body = pagerduty_body(routing_key, TRIGGER, key, summary, source, rule.severity, rule, subject,
                                  row["metric"], float(row["value"]), row["detail"])
            events.append(AlertEvent(TRIGGER, key, rule_name, subject, rule.severity, summary, float(row["value"]),
                                     rule.threshold, body))
        elif not len(breaches) and state in ("open", "pending"):
            summary = f"resolved: {rule_name} on {subject}"
            body = pagerduty_body(routing_key, RESOLVE, key, summary, source, rule.severity, rule, subject,
                                  rows.iloc[0]["metric"], None, None)
            events.append(AlertEvent(RESOLVE, key, rule_name, subject, rule.severity, summary,
                                     float(rows.iloc[0]["value"]), rule.threshold, body))
    return events


def post_event(client: httpx.Client, url: str | None, event: AlertEvent) -> tuple[str, int | None, str | None]:
    """POST one event: (outcome, HTTP status, error). Never raises: a failed call is an outcome."""
    if not url:
        return NOT_SENT, None, "no webhook URL configured (LAKEHOUSE_ALERT_WEBHOOK_URL)"
    try:
        answer = client.post(url, json=event.body)
    except httpx.HTTPError as err:
        return FAILED, None, f"{type(err).__name__}: {err}"
    if 200 <= answer.status_code < 300:
        return DELIVERED, answer.status_code, None
    return FAILED, answer.status_code, answer.text[:500]


def send_events(events: list[AlertEvent], url: str | None, run_id: str, now: datetime,
                timeout_s: float = 10.0) -> pd.DataFrame:
    """Send each event and return the alert log rows. Grain: one row per event sent (or attempted)."""
    rows = []
    with httpx.Client(timeout=timeout_s) as client:
        for event in events:
            outcome, status, error = post_event(client, url, event)
            (log.warning if outcome == FAILED else log.info)(
                "alert event", extra={"action": event.action, "dedup_key": event.dedup_key, "outcome": outcome,
                                      "http_status": status, "error": error})
            rows.append({"run_id": run_id, "sent_at": now, "dedup_key": event.dedup_key, "rule": event.rule,
                         "subject": event.subject, "action": event.action, "severity": event.severity,
                         "summary": event.summary, "value": event.value, "threshold": event.threshold,
                         "outcome": outcome, "http_status": status, "error": error,
                         "payload": json.dumps(event.body, sort_keys=True)})
    frame = pd.DataFrame(rows, columns=list(ALERT_LOG_COLUMNS))
    frame["http_status"] = frame["http_status"].astype("Int64")  # stays an integer beside missing ones
    return frame
