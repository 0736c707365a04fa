import json
from datetime import datetime, timedelta

import httpx
import pandas as pd

from monitoring import alerts
from monitoring.checks import metric_rows
from monitoring.rules import judge, parse_rules
from tests.support import free_port

NOW = datetime(2026, 3, 10, 12, 0)
RULES = parse_rules({"rules": [
    {"name": "drift", "check": "feature_drift", "metric": "psi", "op": ">", "threshold": 0.25,
     "severity": "warning", "summary": "{subject} PSI {value:.2f}"},
    {"name": "worse", "check": "experiment", "metric": "*.ci_high", "op": "<", "threshold": 0,
     "severity": "warning", "summary": "{subject} {metric}"},
]})


def _judged(*rows):
    return judge(metric_rows({"check": check, "subject": subject, "metric": metric, "value": value,
                              "observed_at": NOW, "detail": json.dumps({"bins": 10})}
                             for check, subject, metric, value in rows), RULES)


def test_a_new_breach_triggers_with_the_pagerduty_v2_body():
    events = alerts.plan_events(_judged(("feature_drift", "gold.t.price", "psi", 0.5),
                                        ("feature_drift", "gold.t.cost", "psi", 0.01)), RULES, {}, "rk", "monitor")
    assert len(events) == 1
    assert events[0].body == {
        "routing_key": "rk", "event_action": "trigger", "dedup_key": "lakehouse/drift/gold.t.price",
        "payload": {"summary": "gold.t.price PSI 0.50", "source": "monitor", "severity": "warning",
                    "component": "gold.t.price", "group": "feature_drift", "class": "drift",
                    "custom_details": {"rule": "drift", "check": "feature_drift", "subject": "gold.t.price",
                                       "metric": "psi", "value": 0.5, "op": ">", "threshold": 0.25,
                                       "detail": {"bins": 10}}}}


def test_open_alerts_are_not_resent_and_resolve_when_clear_failed_ones_are_retried():
    breach = _judged(("feature_drift", "gold.t.price", "psi", 0.5))
    clear = _judged(("feature_drift", "gold.t.price", "psi", 0.1))
    key = "lakehouse/drift/gold.t.price"
    assert alerts.plan_events(breach, RULES, {key: "open"}, "rk", "m") == []
    assert [e.action for e in alerts.plan_events(breach, RULES, {key: "pending"}, "rk", "m")] == ["trigger"]
    assert [e.action for e in alerts.plan_events(breach, RULES, {key: "resolved"}, "rk", "m")] == ["trigger"]
    resolve = alerts.plan_events(clear, RULES, {key: "open"}, "rk", "m")
    assert [e.body for e in resolve] == [{"routing_key": "rk", "event_action": "resolve", "dedup_key": key}]
    assert alerts.plan_events(clear, RULES, {}, "rk", "m") == []
    # Not measured this run (value None): nothing is resolved.
    assert alerts.plan_events(_judged(("feature_drift", "gold.t.price", "psi", None)), RULES, {key: "open"},
                              "rk", "m") == []


def test_one_alert_per_rule_and_subject_even_when_several_metrics_breach():
    events = alerts.plan_events(_judged(("experiment", "e/v", "conversion.ci_high", -0.1),
                                        ("experiment", "e/v", "margin.ci_high", -0.2)), RULES, {}, "rk", "m")
    assert [(e.dedup_key, e.value) for e in events] == [("lakehouse/worse/e/v", -0.1)]


def test_alert_states_follow_each_keys_latest_event():
    log = pd.DataFrame([("a", NOW - timedelta(hours=1), "trigger", "delivered"), ("a", NOW, "resolve", "delivered"),
                        ("b", NOW, "trigger", "failed"), ("c", NOW, "trigger", "not_sent"),
                        ("d", NOW - timedelta(hours=1), "resolve", "delivered"), ("d", NOW, "trigger", "delivered")],
                       columns=["dedup_key", "sent_at", "action", "outcome"])
    assert alerts.alert_states(log) == {"a": "resolved", "b": "pending", "c": "open", "d": "open"}
    assert alerts.alert_states(log.iloc[:0]) == {}


def test_post_event_outcomes_never_raise():
    event = alerts.plan_events(_judged(("feature_drift", "gold.t.price", "psi", 0.5)), RULES, {}, "rk", "m")[0]

    def answer(status):
        return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, text="busy")))

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    assert alerts.post_event(answer(202), "http://hook", event) == ("delivered", 202, None)
    assert alerts.post_event(answer(503), "http://hook", event) == ("failed", 503, "busy")
    assert alerts.post_event(httpx.Client(transport=httpx.MockTransport(refuse)), "http://hook", event) == (
        "failed", None, "ConnectError: connection refused")
    assert alerts.post_event(answer(202), None, event) == (
        "not_sent", None, "no webhook URL configured (LAKEHOUSE_ALERT_WEBHOOK_URL)")


def test_send_events_logs_a_refused_webhook_call_and_goes_on():
    closed = free_port()  # nobody listens there
    events = alerts.plan_events(_judged(("feature_drift", "gold.t.price", "psi", 0.5),
                                        ("feature_drift", "gold.t.cost", "psi", 0.9)), RULES, {}, "rk", "m")
    logged = alerts.send_events(events, f"http://127.0.0.1:{closed}/hook", "run-1", NOW, timeout_s=2)
    assert list(logged.columns) == list(alerts.ALERT_LOG_COLUMNS)
    assert [(r.dedup_key, r.action, r.outcome) for r in logged.itertuples()] == [
        ("lakehouse/drift/gold.t.cost", "trigger", "failed"), ("lakehouse/drift/gold.t.price", "trigger", "failed")]
    assert logged["http_status"].isna().all()
    assert all(error.startswith("ConnectError") for error in logged["error"])
    assert json.loads(logged["payload"][0])["dedup_key"] == "lakehouse/drift/gold.t.cost"
