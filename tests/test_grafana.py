"""deploy/grafana/htcgrid.json: valid JSON, and every query names metrics htcgrid exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from htcgrid import metrics as m

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "htcgrid.json"
NAME = re.compile(r"\bhtcgrid_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported() -> set[str]:
    """Every sample name the metrics of ``htcgrid.metrics`` expose."""
    return {x.name + suffix for x in m.ALL for suffix in SUFFIXES[x.kind]}


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_valid_json_with_unique_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p.get("targets") for p in dashboard["panels"])


def test_every_query_names_an_exported_metric() -> None:
    found = queries(json.loads(DASHBOARD.read_text()))
    assert found
    for expr in found:
        names = set(NAME.findall(expr))
        assert names, f"no htcgrid metric in {expr!r}"
        assert names <= exported(), f"unknown metric {names - exported()} in {expr!r}"


def test_the_dashboard_shows_every_metric() -> None:
    named = {n for expr in queries(json.loads(DASHBOARD.read_text())) for n in NAME.findall(expr)}
    shown = {x.name for x in m.ALL if any(x.name + s in named for s in SUFFIXES[x.kind])}
    assert shown == {x.name for x in m.ALL}


def test_a_misspelt_metric_is_caught() -> None:
    assert not set(NAME.findall("rate(htcgrid_task_finished_total[5m])")) <= exported()
