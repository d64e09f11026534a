"""The docker-compose fleet (docker-compose.yml, docker/nginx.conf, docker/prometheus.yml, the
Grafana dashboard), checked without a container engine: replicas behind nginx hashing
X-Session-Id consistently, Prometheus discovering every replica, a stop grace that covers the
drain, every mounted file present, and every metric the dashboard queries exported by the
server."""

import json
import re

import yaml
from prometheus_client import REGISTRY

import service.api.events  # noqa: F401  (each import registers its metrics)
import service.api.metrics  # noqa: F401
import service.cache.metrics  # noqa: F401
import service.engine.metrics  # noqa: F401
from tests.support.service_process import REPO

DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "completion.json"


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def exported_series() -> set[str]:
    """Every series name the server's registry can export, labelled families included."""
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        suffixes = {
            "histogram": ("_bucket", "_sum", "_count"),
            "counter": ("_total",),
            "summary": ("_sum", "_count"),
        }.get(family.type, ())
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_replicas_sit_behind_nginx_hashing_the_session_header():
    services = compose()["services"]
    completion = services["completion"]
    assert "ports" not in completion, "a fixed host port allows one replica only"
    assert int(str(completion["deploy"]["replicas"]).split(":-")[-1].rstrip("}")) >= 2
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert "8000:8000" in nginx["ports"]
    conf = (REPO / "docker" / "nginx.conf").read_text()
    upstream = re.search(r"upstream completion \{(.*?)\}", conf, re.S).group(1)
    assert re.search(r"hash \$http_x_session_id consistent;", upstream)
    assert re.search(r"server completion:8000\b", upstream)
    assert "listen 8000;" in conf and "proxy_pass http://completion;" in conf


def test_every_mounted_file_exists_and_the_stop_grace_covers_the_drain():
    services = compose()["services"]
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} missing"
    completion = services["completion"]
    grace_s = int(completion["stop_grace_period"].removesuffix("s"))
    assert grace_s > float(completion["environment"]["SERVICE_DRAIN_TIMEOUT_S"])
    assert services["redis"]["command"][0] == "redis-server"
    assert completion["environment"]["SERVICE_REDIS_URL"].startswith("redis://redis:")


def test_prometheus_discovers_every_replica():
    config = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["completion"] and discovery["port"] == 8000
    assert discovery["type"] == "A"


def test_every_dashboard_query_reads_metrics_the_server_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(dashboard["panels"]) >= 4
    used = {
        name
        for expr in expressions
        for name in re.findall(r"\b((?:engine|http|completion)_[a-z_]+)\b", expr)
    }
    exported = exported_series()
    assert used, "the dashboard queries nothing"
    assert used <= exported, f"not exported by the server: {sorted(used - exported)}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("latency", "queue", "cache", "kv"):
        assert topic in titles, topic
