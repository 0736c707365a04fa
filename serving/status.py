"""The status page, `GET /status`: what the monitoring job measured, drawn server-side as inline SVG.

One HTML page with no external assets and no script: the latest monitoring run's table freshness and
volume, data-quality failures per quality run, feature drift (PSI), the models served (live, from the
API's model store) and the shipping MAE across monitoring runs, the experiment readout, the open
alerts, the API's latency and error rate (live, from its own metrics, and across monitoring runs), and the
tables synced to the operational database (live: version synced, versions and seconds behind gold).
No API key is needed: it shows no customer data.

The monitoring tables are read with delta-rs in the API's child-process reader
(`lakehouse.delta_reader.DeltaReader`), re-read only when their Delta version changes; a table that
does not exist yet shows as "no data yet" (the page still answers 200).
"""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from lakehouse.delta_reader import DeltaReader, DeltaReadError, storage_options
from lakehouse.postgres import PostgresUnavailable, sync_states
from lakehouse.settings import Settings
from lakehouse.tables import table
from monitoring.alerts import alert_states
from monitoring.checks import api_metrics
from monitoring.rules import BREACH, NO_VALUE, OK

log = logging.getLogger(__name__)

METRICS_TABLE, ALERTS_TABLE = "gold.monitoring_metrics", "gold.alerts"
STATUS_COLOURS = {OK: "#2e9e5b", BREACH: "#d64545", NO_VALUE: "#9aa3ad"}
NEUTRAL = "#4a7bd0"
CHART_WIDTH = 640


# ---------------------------------------------------------------------------------------------------
# Inline SVG charts: every data point is an element with class `point` or `bar` and a data-value


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


# Characters of a chart label that fit left of the plot (about 7.5 px each at the page's font size);
# a longer label is cut with an ellipsis, and its element's tooltip keeps it whole.
LABEL_CHARS = 32


def _label(value) -> str:
    text = str(value)
    return _esc(text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "\u2026")


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}g}"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    colour: str = NEUTRAL
    note: str = ""


def bar_chart(bars: Sequence[Bar], threshold: float | None = None, unit: str = "") -> str:
    """Horizontal bars, one per item, scaled to the largest value (and the threshold, drawn as a line)."""
    if not bars:
        return '<p class="empty">no data yet</p>'
    label_w, row_h, plot_w = 260, 20, CHART_WIDTH - 260 - 90
    top = max([b.value for b in bars] + ([threshold] if threshold is not None else [])) or 1.0
    height = row_h * len(bars) + 6
    parts = [f'<svg class="chart bars" width="{CHART_WIDTH}" height="{height}" role="img" '
             f'viewBox="0 0 {CHART_WIDTH} {height}">']
    for i, bar in enumerate(bars):
        y, width = i * row_h + 3, max(1.0, plot_w * max(bar.value, 0.0) / top)
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_label(bar.label)}</text>'
                     f'<rect class="bar" data-value="{bar.value:.6g}" x="{label_w}" y="{y}" width="{width:.1f}" '
                     f'height="{row_h - 5}" fill="{bar.colour}"><title>{_esc(bar.label)}: {bar.value:.4g}{unit} '
                     f'{_esc(bar.note)}</title></rect>'
                     f'<text x="{label_w + width + 4:.1f}" y="{y + 13}">{_number(bar.value)}{unit}</text>')
    if threshold is not None:
        x = label_w + plot_w * threshold / top
        parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}"/>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: dict[str, list[tuple[datetime, float]]], threshold: float | None = None,
               unit: str = "", height: int = 140) -> str:
    """Lines over time (one per series, points marked), y from 0 to the largest value or threshold."""
    points = [(t, v) for values in series.values() for t, v in values if v is not None and not pd.isna(v)]
    if not points:
        return '<p class="empty">no data yet</p>'
    left, right, top_pad, bottom = 50, 130, 8, 22
    plot_w, plot_h = CHART_WIDTH - left - right, height - top_pad - bottom
    times = [t.timestamp() for t, _ in points]
    t0, t1 = min(times), max(times)
    y_max = max([v for _, v in points] + ([threshold] if threshold is not None else [])) or 1.0

    def xy(t: datetime, v: float) -> tuple[float, float]:
        x = left + (plot_w * (t.timestamp() - t0) / (t1 - t0) if t1 > t0 else plot_w / 2)
        return x, top_pad + plot_h * (1 - v / y_max)

    palette = ("#4a7bd0", "#e08a2e", "#8a5cc2", "#2e9e5b", "#c24a7b", "#5b8a8a")
    parts = [f'<svg class="chart line" width="{CHART_WIDTH}" height="{height}" role="img" '
             f'viewBox="0 0 {CHART_WIDTH} {height}">',
             f'<line class="axis" x1="{left}" x2="{left}" y1="{top_pad}" y2="{top_pad + plot_h}"/>',
             f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top_pad + plot_h}" y2="{top_pad + plot_h}"/>',
             f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end">{_number(y_max)}{unit}</text>',
             f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
             f'<text x="{left}" y="{height - 6}">{datetime.fromtimestamp(t0, UTC):%Y-%m-%d %H:%M}</text>',
             f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">'
             f'{datetime.fromtimestamp(t1, UTC):%Y-%m-%d %H:%M}</text>']
    if threshold is not None:
        y = xy(datetime.fromtimestamp(t0, UTC), threshold)[1]
        parts.append(f'<line class="threshold" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
    for i, (name, values) in enumerate(series.items()):
        colour = palette[i % len(palette)]
        coords = [(xy(t, v), t, v) for t, v in sorted(values) if v is not None and not pd.isna(v)]
        if not coords:
            continue
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{" ".join(f"{x:.1f},{y:.1f}" for (x, y), _, _ in coords)}"/>')
        parts += [f'<circle class="point" data-value="{v:.6g}" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                  f'<title>{_esc(name)} {t:%Y-%m-%d %H:%M}: {v:.4g}{unit}</title></circle>'
                  for (x, y), t, v in coords]
        parts.append(f'<text x="{left + plot_w + 8}" y="{top_pad + 12 + 14 * i}" fill="{colour}">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(rows: Sequence[tuple[str, float, float | None, float | None]]) -> str:
    """Lifts with their confidence intervals (label, lift, low, high) around a zero line."""
    if not rows:
        return '<p class="empty">no data yet</p>'
    label_w, row_h, plot_w = 260, 22, CHART_WIDTH - 260 - 70
    bounds = [abs(v) for _, lift, low, high in rows for v in (lift, low, high) if v is not None and not pd.isna(v)]
    span = max(bounds + [0.01])
    height = row_h * len(rows) + 6

    def x(v: float) -> float:
        return label_w + plot_w * (0.5 + 0.5 * v / span)

    parts = [f'<svg class="chart intervals" width="{CHART_WIDTH}" height="{height}" role="img" '
             f'viewBox="0 0 {CHART_WIDTH} {height}">',
             f'<line class="axis" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="0" y2="{height}"/>']
    for i, (label, lift, low, high) in enumerate(rows):
        y = i * row_h + 12
        whisker = all(v is not None and not pd.isna(v) for v in (low, high))
        significant = BREACH if whisker and high < 0 else OK if whisker and low > 0 else None
        colour = STATUS_COLOURS.get(significant, NEUTRAL)
        parts.append(f'<text x="{label_w - 6}" y="{y + 4}" text-anchor="end">{_label(label)}</text>')
        if whisker:
            parts.append(f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y}" y2="{y}" stroke="{colour}" '
                         f'stroke-width="2"/>')
        parts.append(f'<circle class="point" data-value="{lift:.6g}" cx="{x(lift):.1f}" cy="{y}" r="4" '
                     f'fill="{colour}"><title>{_esc(label)}: lift {lift:+.2%}</title></circle>'
                     f'<text x="{CHART_WIDTH - 60}" y="{y + 4}">{lift:+.1%}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------
# The page


def _table_html(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return '<p class="empty">no data yet</p>'
    return ("<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + f"</tr>{body}</table>")


def _badge(status: str, text: str | None = None) -> str:
    return f'<span class="badge {_esc(status)}">{_esc(text or status)}</span>'


def _latest_run(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.loc[metrics["run_id"] == metrics.loc[metrics["computed_at"].idxmax(), "run_id"]]


def _bars(rows: pd.DataFrame, label=lambda r: r.subject) -> list[Bar]:
    return [Bar(label(r), float(r.value), STATUS_COLOURS.get(r.status, NEUTRAL), r.rule or "")
            for r in rows.itertuples(index=False) if not pd.isna(r.value)]


def _history(metrics: pd.DataFrame, check: str, metric_names: Sequence[str]) -> dict[str, list[tuple[datetime, float]]]:
    """One series per metric (and subject when several): its value at each monitoring run."""
    rows = metrics.loc[(metrics["check"] == check) & metrics["metric"].isin(metric_names)]
    return {f"{metric}" if rows["subject"].nunique() == 1 else f"{subject} {metric}":
            list(zip(group["computed_at"], group["value"], strict=True))
            for (subject, metric), group in rows.groupby(["subject", "metric"])}


def _synced(synced: dict[str, dict] | str) -> str:
    """The synced tables' state (`lakehouse.postgres.sync_states`), or why it is unknown."""
    if isinstance(synced, str):
        return f"<p>{_badge('error', 'unknown')} {_esc(synced)}</p>"

    def behind(state: dict) -> str:
        if state["synced_version"] is None:
            return _badge(NO_VALUE, "not synced yet" if state["gold_version"] is not None else "no gold table yet")
        late = state["versions_behind"]
        return _badge(OK if late == 0 else BREACH, f"{late} behind, {state['lag_s']:g} s")

    return _table_html(("table", "version synced", "gold version", "behind", "rows", "synced at (UTC)"), (
        (_esc(name), _esc(_or_dash(state["synced_version"])), _esc(_or_dash(state["gold_version"])), behind(state),
         _esc(_or_dash(state["rows"])), _esc((state["synced_at"] or "-")[:19].replace("T", " ")))
        for name, state in synced.items()))


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


def _sections(metrics: pd.DataFrame | None, alert_log: pd.DataFrame | None, models: dict[str, str | None],
              live_api: pd.DataFrame | None, synced: dict[str, dict] | str) -> list[tuple[str, str]]:
    latest = _latest_run(metrics) if metrics is not None and len(metrics) else None

    def latest_rows(check: str, metric: str | None = None) -> pd.DataFrame:
        if latest is None:
            return pd.DataFrame(columns=["subject", "metric", "value", "status", "rule", "observed_at", "threshold"])
        rows = latest.loc[latest["check"] == check]
        return rows.loc[rows["metric"] == metric] if metric else rows

    def threshold(rows: pd.DataFrame) -> float | None:
        values = rows["threshold"].dropna()
        return float(values.iloc[0]) if len(values) else None

    sections = []
    # Open alerts
    open_rows = []
    if alert_log is not None and len(alert_log):
        states = alert_states(alert_log)
        triggers = alert_log.loc[alert_log["action"] == "trigger"].sort_values("sent_at").groupby("dedup_key").tail(1)
        open_rows = [(_badge(r.severity), _esc(r.summary), f"{r.sent_at:%Y-%m-%d %H:%M}", _esc(r.outcome))
                     for r in triggers.sort_values("sent_at", ascending=False).itertuples(index=False)
                     if states.get(r.dedup_key) in ("open", "pending")]
    sections.append(("Open alerts", _table_html(("severity", "alert", "since (UTC)", "webhook"), open_rows)
                     if open_rows else '<p class="empty">no open alerts</p>'))
    # Tables
    fresh = latest_rows("freshness", "age_hours").sort_values("value", ascending=False)
    ratio = latest_rows("volume", "volume_ratio").dropna(subset=["value"]).sort_values("value")
    sections.append(("Table freshness (hours since the last commit)",
                     bar_chart(_bars(fresh), threshold(fresh), " h")))
    sections.append(("Table volume (rows of the last day / mean of the 7 days before)",
                     bar_chart(_bars(ratio), threshold(ratio), "×")))
    sections.append(("Operational database: tables synced to PostgreSQL", _synced(synced)))
    # Quality over time: failed rules per quality run, one series per table
    quality = pd.DataFrame() if latest is None else latest.loc[latest["check"] == "quality"]
    by_table = {}
    if len(quality):
        totals = quality.groupby(["subject", "observed_at"], as_index=False)["value"].sum()
        by_table = {subject: list(zip(group["observed_at"], group["value"], strict=True))
                    for subject, group in totals.groupby("subject") if group["value"].sum() > 0}
    gate_failures = quality.loc[(quality["metric"] == "failed_rules_fail") & (quality["status"] == BREACH)] \
        if len(quality) else quality
    note = "".join(f"<p>{_badge(BREACH, 'gate failed')} {_esc(r.subject)}</p>"
                   for r in gate_failures.itertuples(index=False))
    sections.append(("Data quality: failed rules per quality run (tables with failures)",
                     note + line_chart(by_table)))
    # Schema drift
    drift = latest_rows("schema_drift", "drift_findings")
    sections.append(("Schema drift (findings in the last day)", _table_html(
        ("source", "findings", "what"),
        ((_esc(r.subject), _badge(r.status, _number(r.value)), _esc(", ".join(json.loads(r.detail)["findings"])))
         for r in drift.itertuples(index=False)))))
    # Feature drift
    psi = latest_rows("feature_drift", "psi").sort_values("value", ascending=False)
    sections.append(("Feature drift: PSI of the latest snapshot against the training window",
                     bar_chart(_bars(psi), threshold(psi))))
    # Models
    served = _table_html(("model@alias", "version served"),
                         ((_esc(name), _esc(version or "none loaded")) for name, version in sorted(models.items())))
    mae = line_chart(_history(metrics, "model_performance", ("mae_usd", "rate_card_mae_usd")), unit=" USD") \
        if metrics is not None else '<p class="empty">no data yet</p>'
    sections.append(("Models served and shipping MAE on recent invoices (per monitoring run)", served + mae))
    # Experiment
    experiment = latest_rows("experiment")
    lifts = experiment.loc[experiment["metric"].str.endswith(".lift")] if len(experiment) else experiment
    intervals = []
    for r in lifts.itertuples(index=False):
        base = r.metric.removesuffix(".lift")
        bounds = experiment.loc[experiment["subject"] == r.subject].set_index("metric")["value"]
        intervals.append((f"{r.subject} {base}", float(r.value), bounds.get(f"{base}.ci_low"),
                          bounds.get(f"{base}.ci_high")))
    values = experiment.loc[experiment["metric"].str.endswith(".value")] if len(experiment) else experiment
    readout = _table_html(("variant", "metric", "value"), ((_esc(r.subject), _esc(r.metric.removesuffix(".value")),
                                                            _number(r.value, 4)) for r in values.itertuples()))
    sections.append(("Experiment readout: lift against control with its confidence interval",
                     interval_chart(intervals) + readout))
    # API
    live = "" if live_api is None else _table_html(
        ("since this process started", "value"),
        ((_esc(r.metric), _number(r.value, 4)) for r in live_api.itertuples(index=False)))
    latency = line_chart(_history(metrics, "api", ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")),
                         unit=" ms") if metrics is not None else '<p class="empty">no data yet</p>'
    errors = line_chart(_history(metrics, "api", ("error_rate",)), height=100) if metrics is not None else ""
    sections.append(("API latency and 5xx rate (per monitoring run)", live + latency + errors))
    return sections


# The at-a-glance tiles, in page order: (check, what a person calls it).
TILES = (("freshness", "Freshness"), ("volume", "Volume"), ("quality", "Data quality"), ("schema_drift", "Schema"),
         ("feature_drift", "Feature drift"), ("model_performance", "Shipping model"), ("experiment", "Experiment"),
         ("api", "API"))


def _tiles(latest: pd.DataFrame | None) -> str:
    """One tile per check: red with the number of breaches, else green when it measured something, grey
    when the check was skipped or has no data."""
    tiles = []
    for check, name in TILES:
        rows = latest.loc[latest["check"] == check] if latest is not None else pd.DataFrame(columns=["status", "value"])
        breaches = int((rows["status"] == BREACH).sum())
        status, text = ((BREACH, f"{breaches} breached") if breaches else (OK, "ok") if rows["value"].notna().any()
                        else (NO_VALUE, "no data"))
        tiles.append(f'<div class="tile {status}"><b>{_esc(name)}</b><span>{_esc(text)}</span></div>')
    return f'<div class="tiles">{"".join(tiles)}</div>'


def render_page(metrics: pd.DataFrame | None, alert_log: pd.DataFrame | None, models: dict[str, str | None],
                live_api: pd.DataFrame | None, synced: dict[str, dict] | str, now: datetime) -> str:
    """The whole page from the monitoring tables (None: not there yet), the API's live state and the synced
    tables' state (or why it is unknown)."""
    latest = _latest_run(metrics) if metrics is not None and len(metrics) else None
    if latest is not None:
        breaches = int((latest["status"] == BREACH).sum())
        headline = (f'{_badge(BREACH if breaches else OK, f"{breaches} rule(s) breached" if breaches else "all clear")}'
                    f' monitoring run {_esc(latest["run_id"].iloc[0][:8])} at '
                    f'{latest["computed_at"].iloc[0]:%Y-%m-%d %H:%M} UTC')
    else:
        headline = (f'{_badge(NO_VALUE, "no data yet")} the monitoring job has not run yet '
                    '(<code>lakehouse monitor</code>)')
    body = "".join(f"<section><h2>{_esc(title)}</h2>{content}</section>"
                   for title, content in _sections(metrics, alert_log, models, live_api, synced))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lakehouse status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1340px; padding: 16px; color: #1d2733;
       background: #f5f7fa; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(660px, 1fr)); gap: 12px; }}
section {{ background: #fff; border-radius: 8px; padding: 8px 10px; box-shadow: 0 1px 3px #0002; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 15px; margin: 2px 0 8px; }}
svg text {{ font-size: 11px; fill: #334; }} .threshold {{ stroke: #d64545; stroke-dasharray: 4 3; }}
.axis {{ stroke: #99a; }} table {{ border-collapse: collapse; margin-bottom: 6px; }}
td, th {{ padding: 2px 8px; border-bottom: 1px solid #e3e7ec; text-align: left; }}
.badge {{ border-radius: 4px; padding: 1px 6px; color: #fff; background: #9aa3ad; }}
.badge.ok {{ background: #2e9e5b; }} .badge.breach, .badge.critical, .badge.error {{ background: #d64545; }}
.badge.warning {{ background: #e08a2e; }} .empty {{ color: #778; font-style: italic; }}
.tiles {{ display: flex; flex-wrap: wrap; gap: 8px; margin: 0 0 12px; }}
.tile {{ flex: 1 1 140px; border-radius: 8px; padding: 8px 10px; color: #fff; background: #9aa3ad; }}
.tile b {{ display: block; font-size: 13px; }} .tile span {{ font-size: 18px; }}
.tile.ok {{ background: #2e9e5b; }} .tile.breach {{ background: #d64545; }}
</style></head>
<body><h1>Lakehouse status</h1><p>{headline} · page built {now:%Y-%m-%d %H:%M:%S} UTC</p>
{_tiles(latest)}<main>{body}</main></body></html>"""


# ---------------------------------------------------------------------------------------------------
# Reading the monitoring tables


class StatusPage:
    """The /status route and its reader of the monitoring tables (re-read when their version changes)."""

    def __init__(self, settings: Settings, reader: DeltaReader | None = None):
        self.settings = settings
        self.reader = reader or DeltaReader(storage_options(settings))
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, pd.DataFrame]] = {}
        self.router = APIRouter(tags=["ops"])
        self.router.add_api_route("/status", self.page, methods=["GET"], response_class=HTMLResponse,
                                  summary="Status page: monitoring results as charts (HTML, no key needed)")

    def tables(self) -> dict[str, pd.DataFrame | None]:
        """The monitoring tables (None: not written yet), re-read only when their Delta version moved."""
        locations = {name: table(name).location(self.settings) for name in (METRICS_TABLE, ALERTS_TABLE)}
        with self._lock:
            versions = self.reader.versions(locations)
            for name, version in versions.items():
                if version is not None and self._cache.get(name, (None,))[0] != version:
                    self._cache[name] = (version, self.reader.read(locations[name], version).to_pandas())
            return {name: self._cache[name][1] if versions[name] is not None else None for name in locations}

    def page(self, request: Request) -> HTMLResponse:
        """Sync on purpose: the table reads block, so FastAPI runs it in its thread pool."""
        now = datetime.now(UTC)
        try:
            tables = self.tables()
        except DeltaReadError as err:  # the page still answers, saying why it has nothing to show
            log.error("status page could not read the monitoring tables", extra={"error": str(err)})
            tables = dict.fromkeys((METRICS_TABLE, ALERTS_TABLE))
        serving = getattr(request.app.state, "serving", None)
        models = serving.models.versions() if serving is not None else {}
        live_api = api_metrics(serving.metrics.render()[0].decode(), now) if serving is not None else None
        try:
            synced = sync_states(self.settings, self.reader)
        except (PostgresUnavailable, DeltaReadError) as err:  # the page still answers, saying why
            synced = str(err)
        return HTMLResponse(render_page(tables[METRICS_TABLE], tables[ALERTS_TABLE], models, live_api, synced, now))

    def close(self) -> None:
        self.reader.close()
