"""The operators' side, checked offline: deploy/prometheus (alerts, their promtool unit tests, the
scrape config) and deploy/grafana (the dashboard and its provisioning).

promtool comes from Debian's `prometheus` package (`.ci/run` installs it); without it the
promtool tests fail, naming the package. The rest parses the files in Python: every alert the
brief asks for is there with `for:`, a severity, a summary and a description naming where to
look; every expression, alert or panel, names only the metrics ratesync's workers export (the
contract of issue 14 plus the two this file adds, below) and only their labels.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"

# name -> (type, labels). The first eight are the contract of issue 14 (README "Metrics");
# the last two are what the alerts need beyond it: the dead letters (rows in sync_failures, a
# parked Discord channel among them) and the runs ended per outcome (sync_runs.status).
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "ratesync_upstream_requests_total": ("counter", frozenset({"provider", "bucket", "status"})),
    "ratesync_rate_limited_total": ("counter", frozenset({"provider", "scope"})),
    "ratesync_limiter_wait_seconds": ("histogram", frozenset({"lane"})),
    "ratesync_bucket_utilisation": ("gauge", frozenset({"provider", "bucket", "window"})),
    "ratesync_rows_upserted_total": ("counter", frozenset({"table", "outcome"})),
    "ratesync_sync_duration_seconds": ("histogram", frozenset({"provider", "kind"})),
    "ratesync_scheduler_queue_depth": ("gauge", frozenset({"scheduler"})),
    "ratesync_scheduler_oldest_wait_seconds": ("gauge", frozenset({"scheduler"})),
    # beyond the contract (the metrics helper / the lead add them to the workers)
    "ratesync_dead_letters": ("gauge", frozenset({"provider"})),
    "ratesync_sync_runs_total": ("counter", frozenset({"provider", "kind", "outcome"})),
    # Prometheus's own, per scrape target
    "up": ("gauge", frozenset()),
}
TARGET_LABELS = frozenset({"job", "instance"})  # Prometheus adds them to every scraped series
WORKER_JOB = "ratesync-worker"

# The brief's alerts ("any 429 in 5 min, a conflict, queue oldest wait > 5 min, a parked channel
# or a dead letter, a sync failing") and a worker down, without which none of them can fire.
ALERTS = {
    "RatesyncRateLimited",
    "RatesyncSyncConflict",
    "RatesyncSchedulerBackedUp",
    "RatesyncDeadLetter",
    "RatesyncSyncFailing",
    "RatesyncWorkerDown",
}

# --- PromQL, as far as these checks need it --------------------------------------------------

_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_OFFSET = re.compile(r"\boffset\s+-?\d+[smhdwy]+\b")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions and keywords left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match[0] not in _KEYWORDS:
            names.add(match[0])
    return names


def label_names(expr: str) -> set[str]:
    """The labels an expression matches on or groups by."""
    text = _STRING.sub('""', expr)
    labels: set[str] = set()
    for body in _MATCHERS.findall(text):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body))
    for body in _GROUPING.findall(text):
        labels.update(name.strip() for name in body.split(",") if name.strip())
    return labels


def series_family(name: str) -> str | None:
    """The exported metric a selected series belongs to (a histogram's _bucket/_sum/_count)."""
    if name in METRICS and METRICS[name][0] != "histogram":
        return name
    base, _, suffix = name.rpartition("_")
    if suffix in {"bucket", "sum", "count"} and METRICS.get(base, ("",))[0] == "histogram":
        return base
    return None


def check_expression(expr: str) -> list[str]:
    """What is wrong with an expression: unknown series, labels its metrics do not carry."""
    problems = []
    families = set()
    for name in metric_names(expr):
        family = series_family(name)
        if family is None:
            problems.append(f"unknown series {name!r}")
        else:
            families.add(family)
    allowed = set(TARGET_LABELS)
    for family in families:
        allowed |= METRICS[family][1]
        if METRICS[family][0] == "histogram":
            allowed.add("le")
    problems += [f"label {label!r} not on {sorted(families)}" for label in
                 sorted(label_names(expr) - allowed)]  # fmt: skip
    if not families:
        problems.append("selects no metric")
    return problems


def test_the_promql_checks_see_through_functions_ranges_matchers_and_grouping() -> None:
    expr = (
        'sum by (provider, scope) ((increase(ratesync_rate_limited_total{scope!="x"}[5m]) and '
        "ratesync_rate_limited_total offset 5m) or ratesync_rate_limited_total) > 0 or "
        "histogram_quantile(0.99, sum by (lane, le) (rate(ratesync_limiter_wait_seconds_bucket"
        '[$__rate_interval]))) or absent(up{job="w"}) or min_over_time(foo:bar[1h:1m])'
    )
    assert metric_names(expr) == {
        "ratesync_rate_limited_total", "ratesync_limiter_wait_seconds_bucket", "up", "foo:bar",
    }  # fmt: skip
    assert label_names(expr) == {"provider", "scope", "lane", "le", "job"}
    assert check_expression(expr) == ["unknown series 'foo:bar'"]
    assert check_expression("rate(ratesync_limiter_wait_seconds[5m])") == [
        "unknown series 'ratesync_limiter_wait_seconds'",  # a histogram is read by its series
        "selects no metric",
    ]
    assert check_expression("sum by (scope) (ratesync_upstream_requests_total)") == [
        "label 'scope' not on ['ratesync_upstream_requests_total']"
    ]
    assert check_expression('max by (scheduler) (ratesync_scheduler_queue_depth{job="x"})') == []


# --- promtool ---------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package "
            "(`apt-get install --no-install-recommends prometheus`; .ci/run does it as root)"
        )
    return subprocess.run(
        [path, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )  # fmt: skip


def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in rules.stdout
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout  # alerts.yml, found from the config


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_shown_both_firing_and_silent_by_the_promtool_tests() -> None:
    suite = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    assert suite["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in suite["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    assert firing == ALERTS
    assert silent == ALERTS


# --- the alert rules --------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_brief_alerts_each_have_for_a_severity_a_summary_and_where_to_look() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description"}, name
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        # the description names a command to look with
        assert re.search(r"`(python starter\.py|docker compose) [^`]+`", annotations["description"])
    assert alerts["RatesyncSyncFailing"]["labels"]["severity"] == "critical"
    assert alerts["RatesyncWorkerDown"]["labels"]["severity"] == "critical"


def test_the_thresholds_are_the_briefs() -> None:
    alerts = {rule["alert"]: rule["expr"] for rule in rules() if "alert" in rule}
    assert "[5m]" in alerts["RatesyncRateLimited"]  # any 429 in 5 minutes
    assert re.search(r"ratesync_scheduler_oldest_wait_seconds\)\s*>\s*300\b",
                     alerts["RatesyncSchedulerBackedUp"])  # fmt: skip
    assert 'outcome="abandoned"' in alerts["RatesyncSyncConflict"]
    assert "conflicts_avoided" not in alerts["RatesyncSyncConflict"]


def test_alert_expressions_name_only_exported_metrics_and_their_labels() -> None:
    for rule in rules():
        assert "record" not in rule, "no recording rules: every name here is a worker's"
        problems = check_expression(rule["expr"])
        assert not problems, f"{rule['alert']}: {problems}"
        if "up" in metric_names(rule["expr"]):
            assert f'job="{WORKER_JOB}"' in rule["expr"], rule["alert"]


def test_alert_labels_and_templates_name_only_labels_the_expression_keeps() -> None:
    for rule in rules():
        kept = {"job", "instance"} if "up{" in rule["expr"] else set()
        for body in _GROUPING.findall(rule["expr"]):
            kept |= {name.strip() for name in body.split(",")}
        for text in rule["annotations"].values():
            used = set(re.findall(r"\$labels\.(\w+)", text))
            assert used <= kept, (rule["alert"], used - kept)


def test_scrape_job_is_the_one_the_alerts_and_dashboard_name() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {WORKER_JOB}  # the read API serves no metrics
    (sd,) = jobs[WORKER_JOB]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A"


# --- the Grafana dashboard --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads((GRAFANA / "ratesync.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_targets_name_only_exported_metrics_through_the_templated_datasource(
    dashboard: dict[str, Any],
) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert variables["provider"]["datasource"] == datasource
    # Grafana's label_values(metric, label), not PromQL
    query = re.fullmatch(r"label_values\((\w+), (\w+)\)", variables["provider"]["definition"])
    assert query is not None
    metric, label = query.groups()
    assert label in METRICS[metric][1]
    used: set[str] = set()
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            problems = check_expression(target["expr"])
            assert not problems, f"{panel['title']}: {problems}"
            used |= {series_family(name) or name for name in metric_names(target["expr"])}
            # a legend can show only labels the query keeps
            kept = set(TARGET_LABELS) if "sum(" not in target["expr"] else set()
            for body in _GROUPING.findall(target["expr"]):
                kept |= {name.strip() for name in body.split(",")} - {"le"}
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert legend <= kept, (panel["title"], legend - kept)
    assert used == set(METRICS), f"no panel shows {sorted(set(METRICS) - used)}"


def test_dashboard_layout_is_a_valid_grid_of_unique_panels(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "ratesync" and dashboard["title"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_grafana_provisioning_reads_the_compose_prometheus_and_the_mounted_dashboard(
    dashboard: dict[str, Any],
) -> None:
    provisioning = GRAFANA / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["current"]["value"] == source["uid"]

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "ratesync.yml").read_text())[
        "providers"
    ]
    dashboard_file = Path(mounts["./deploy/grafana/ratesync.json"])
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]) == dashboard_file.parent
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == str(
        dashboard_file
    )
