"""/metrics as Prometheus scrapes it: the text exposition format, every sample labelled
with its cloud, rendered from the status the controller writes."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from controller.metrics import CONTENT_TYPE, MetricsServer, render
from controller.status import Status

SAMPLE = re.compile(r'^([a-z_]+)(\{.*\})? (\S+)$')


def parse(text: str) -> dict[str, list[tuple[dict, float]]]:
    """name -> [(labels, value)], asserting every line is valid exposition format."""
    out: dict[str, list] = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter") and name not in types
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        assert name in types, f"{name} has no # TYPE"
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        out.setdefault(name, []).append((pairs, float(value)))
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total")
    return out


def value(metrics, name, **labels) -> float:
    found = [v for lab, v in metrics[name] if all(lab.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, metrics.get(name))
    return found[0]


def running(*states, current=True):
    return [{"host": "h1", "name": f"c{i}", "state": s, "release": "2025.1", "current": current}
            for i, s in enumerate(states)]


@pytest.fixture
def status(tmp_path) -> Status:
    s = Status("prod", ready=True, reason="Applied", last_applied_revision="a" * 40,
               last_applied_at="2026-01-02T03:04:05Z", last_attempted_revision="b" * 40, last_duration=12.5,
               errors_total=3, drift_repairs=2,
               services={"keystone": {"replicas": 3, "running": running("running", "running", "exited")},
                         "glance": {"replicas": 2, "running": running("running") + running("running", current=False)}})
    s.save(tmp_path)
    return s


@pytest.fixture
def server(tmp_path, status):
    srv = MetricsServer(lambda: Status.load(tmp_path, "prod"), port=0, address="127.0.0.1").start()
    yield srv
    srv.stop()


def scrape(srv, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def test_scrape_serves_every_metric_labelled_with_the_cloud(server):
    content_type, text = scrape(server)
    assert content_type == CONTENT_TYPE
    m = parse(text)
    assert value(m, "tidegate_ready", cloud="prod") == 1
    assert value(m, "tidegate_stalled", cloud="prod") == 0
    assert value(m, "tidegate_last_applied_timestamp_seconds", cloud="prod") == 1767323045
    assert value(m, "tidegate_last_convergence_duration_seconds", cloud="prod") == 12.5
    assert value(m, "tidegate_errors_total", cloud="prod") == 3
    assert value(m, "tidegate_drift_repairs_total", cloud="prod") == 2
    assert value(m, "tidegate_service_replicas_ready", cloud="prod", service="keystone") == 2
    assert value(m, "tidegate_service_replicas_ready", cloud="prod", service="glance") == 1
    assert value(m, "tidegate_service_replicas_desired", cloud="prod", service="glance") == 2
    assert value(m, "tidegate_revision_info", applied="a" * 40, attempted="b" * 40) == 1
    assert all(labels.get("cloud") == "prod" for samples in m.values() for labels, _ in samples)


def test_each_scrape_reads_the_current_status(server, tmp_path):
    s = Status.load(tmp_path, "prod")
    s.ready, s.stalled, s.reason, s.errors_total = False, True, "RolloutFailed", 4
    s.save(tmp_path)
    m = parse(scrape(server)[1])
    assert value(m, "tidegate_ready") == 0 and value(m, "tidegate_stalled") == 1
    assert value(m, "tidegate_errors_total") == 4


def test_other_paths_are_not_found(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        scrape(server, "/")
    assert err.value.code == 404


def test_a_cloud_never_applied_has_no_last_applied_timestamp():
    m = parse(render(Status("new")))
    assert "tidegate_last_applied_timestamp_seconds" not in m
    assert value(m, "tidegate_ready", cloud="new") == 0 and value(m, "tidegate_errors_total") == 0


def test_label_values_are_escaped():
    text = render(Status('we"ird\\cloud\n'))
    assert 'cloud="we\\"ird\\\\cloud\\n"' in text
    parse(text)


def test_extra_samples_from_the_service_are_rendered():
    m = parse(render(Status("c"), {"tidegate_source_fetch_errors_total": ("counter", "fetch errors", 7)}))
    assert value(m, "tidegate_source_fetch_errors_total", cloud="c") == 7
