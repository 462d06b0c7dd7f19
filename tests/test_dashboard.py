"""The Grafana dashboard only asks for what a live server's /metrics really has.

Every PromQL expression in deploy/grafana/dashboards/mirage.json is taken apart
(metric names, ``by (...)`` labels, ``label="value"`` matchers) and checked against
``/metrics`` of a real session, parsed with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mirage.client.probe import Probe
from tests.server_fixtures import StartServer, base_url

DASHBOARD = (
    Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards" / "mirage.json"
)

# Labels Prometheus adds at scrape time, and the bucket bound of histogram series.
SCRAPE_LABELS = {"instance", "job"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}


@dataclass
class Query:
    metrics: set[str] = field(default_factory=set)
    grouping: set[str] = field(default_factory=set)  # labels in by (...)
    matchers: list[tuple[str, str, str]] = field(default_factory=list)  # metric, label, value


def parse_promql(expr: str) -> Query:
    """Metric names, grouping labels and equality matchers of one PromQL expression.

    Not a full PromQL parser: enough for selectors, functions, aggregations with
    ``by``, arithmetic and string/duration literals, which is what dashboards use.
    """
    query = Query()
    for match in re.finditer(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        for label, value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', match.group(2)):
            if label not in SCRAPE_LABELS:
                query.matchers.append((match.group(1), label, value))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        query.grouping |= {part.strip() for part in group.split(",") if part.strip()}
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    bare = re.sub(r"\{[^}]*\}", "", bare)  # label matchers (and $variables in them)
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range durations
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", bare)  # label lists
    for token in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", bare):
        following = bare[token.end() :].lstrip()
        if following.startswith("(") or token.group() in _KEYWORDS:
            continue  # a function or an aggregation, or an operator keyword
        query.metrics.add(token.group())
    return query


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Every ``expr`` of every panel target, and every query variable, in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "definition" and isinstance(value, str):
                yield from re.findall(r"label_values\(\s*([^,)]+)", value)
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def test_promql_parser_takes_expressions_apart() -> None:
    q = parse_promql(
        'histogram_quantile(0.95, sum by (le, track) (rate(mirage_stage_seconds_bucket{instance=~"$instance", track="video"}[$__rate_interval]))) / 2'
        " + on (instance) sum(mirage_sessions_active offset 5m)"
    )
    assert q.metrics == {"mirage_stage_seconds_bucket", "mirage_sessions_active"}
    assert q.grouping == {"le", "track"}
    assert q.matchers == [("mirage_stage_seconds_bucket", "track", "video")]


@dataclass
class Exposed:
    """What /metrics offers: series names (with suffixes), their labels and values."""

    declared: set[str] = field(default_factory=set)
    families: dict[str, set[str]] = field(default_factory=dict)  # family → its series names
    labels: dict[str, set[str]] = field(default_factory=dict)
    values: dict[tuple[str, str], set[str]] = field(default_factory=dict)


def exposed(text: str) -> Exposed:
    out = Exposed()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    families = list(text_string_to_metric_families(text))
    names = {family.name for family in families}
    for family in families:
        if family.name.endswith("_created") and family.name.removesuffix("_created") in names:
            continue  # the 0.0.4 text format's creation-time gauge of a counter/histogram
        # The parser names a counter family without its _total; series keep it.
        series = {family.name + suffix for suffix in suffixes.get(family.type, [""])}
        out.declared |= series
        out.families[family.name] = series
        for sample in family.samples:
            out.labels.setdefault(sample.name, set()).update(sample.labels)
            for label, value in sample.labels.items():
                out.values.setdefault((sample.name, label), set()).add(value)
    return out


async def test_every_dashboard_query_matches_live_metrics(start_server: StartServer) -> None:
    server = await start_server(max_sessions=1)
    url = base_url(server)
    # A failing face model every 5th frame: model-error series exist too; the dsp voice
    # comes behind the voice gate, whose per-session gauge needs a panel as well.
    options = {"face": "failing", "face_options": {"every": 5}, "voice": "dsp"}
    probe = Probe(url, size=256, fps=15.0, options=options)
    try:
        await probe.connect()
        async with aiohttp.ClientSession() as http:
            # One refused offer, so the "full" panel's result="ServerFull" is real.
            body = {"type": "offer", "sdp": probe.pc.localDescription.sdp}
            async with http.post(f"{url}/offer", json=body) as resp:
                assert resp.status == 503
            needed = {
                "mirage_frame_latency_seconds_bucket",
                "mirage_model_errors_total",
                "mirage_av_skew_seconds",
                "mirage_quality_level",
                "mirage_voice_gate_open_ratio",
                "mirage_voice_suppressor_strength",
            }
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                async with http.get(f"{url}/metrics") as resp:
                    assert resp.status == 200
                    found = exposed(await resp.text())
                if needed <= found.labels.keys():
                    break
                missing = needed - found.labels.keys()
                assert asyncio.get_running_loop().time() < deadline, f"never exposed: {missing}"
                await asyncio.sleep(0.3)
    finally:
        await probe.close()

    exprs = list(dashboard_exprs(json.loads(DASHBOARD.read_text())))
    assert len(exprs) >= 20, "the dashboard lost its panels"
    used: set[str] = set()
    for expr in exprs:
        query = parse_promql(expr)
        assert query.metrics, f"no metric found in {expr!r}"
        used |= query.metrics
        for name in query.metrics:
            assert name in found.declared, f"{name} (in {expr!r}) is not in /metrics"
            assert name in found.labels, f"{name} has no samples after a live session"
            # Only labels one of the expression's metrics has (each expression here
            # aggregates one metric, or several with the same labels).
            have = set(found.labels[name]) | SCRAPE_LABELS
            assert query.grouping <= have, f"{expr!r} groups by {query.grouping - have}"
        for name, label, value in query.matchers:
            assert value in found.values.get((name, label), set()), (
                f'{name}{{{label}="{value}"}} (in {expr!r}) never appears in /metrics'
            )
    # The dashboard covers every metric the server has: a new metric needs a panel.
    uncovered = sorted(name for name, series in found.families.items() if not series & used)
    assert not uncovered, f"metrics without a panel in {DASHBOARD.name}: {uncovered}"


#: Per-session gauges: no series until a session exists (their label is its id);
#: their panels say "no session" instead of Grafana's "No data".
PER_SESSION = {
    "mirage_quality_level",
    "mirage_av_skew_seconds",
    "mirage_playout_delay_seconds",
    "mirage_voice_gate_open_ratio",
    "mirage_voice_suppressor_strength",
}


def panels(node: Any) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)


async def test_every_dashboard_query_has_series_on_an_idle_server(
    start_server: StartServer,
) -> None:
    """A fresh server, no session yet: every panel already has zero series to draw."""
    server = await start_server()
    async with aiohttp.ClientSession() as http, http.get(f"{base_url(server)}/metrics") as resp:
        assert resp.status == 200
        found = exposed(await resp.text())
    dashboard = json.loads(DASHBOARD.read_text())
    checked = 0
    for panel in panels(dashboard):
        for expr in dashboard_exprs(panel.get("targets", [])):
            query = parse_promql(expr)
            for name in query.metrics:
                checked += 1
                if name in PER_SESSION:
                    no_value = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue")
                    assert no_value, f"{panel['title']!r} shows 'No data' with no session"
                    continue
                assert name in found.labels, f"{name} (in {expr!r}) has no series when idle"
                have = set(found.labels[name]) | SCRAPE_LABELS
                assert query.grouping <= have, f"{expr!r} groups by {query.grouping - have}"
            for name, label, value in query.matchers:
                assert value in found.values.get((name, label), set()), (
                    f'{name}{{{label}="{value}"}} (in {expr!r}) is not in an idle /metrics'
                )
    assert checked >= 20, "the dashboard lost its panels"
    # The backends that can run here have their error series already.
    assert "passthrough" in found.values[("mirage_model_errors_total", "backend")]
