"""The Kubernetes manifests (deploy/k8s), checked without a cluster: `kubectl kustomize` renders
each overlay, every object validates against the Kubernetes JSON schemas bundled by
kubernetes-validate (offline, strict: an unknown field fails), and the settings that must agree
with the server do: probes on its health path, every SERVICE_* variable a real flag, a kill grace
that covers the drain, session-hash routing, an HPA on the engine's gauge of waiting requests
that the adapter rules serve, GPUs requested only by the GPU overlay."""

import dataclasses
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from service.settings import ENV_PREFIX, Settings
from tests.support.service_process import REPO

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSION = "1.33.0"  # the oldest release the manifests target (preStop sleep: 1.30+)

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed"
)


def render(overlay: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def completion_container(objects: list[dict]) -> dict:
    (container,) = one(objects, "Deployment", "completion")["spec"]["template"]["spec"][
        "containers"
    ]
    return container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(overlay):
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
    } <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validation_rejects_a_misspelt_field():
    """Guards the test above: strict validation really reads the fields."""
    deployment = one(render("cpu"), "Deployment", "completion")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"path": "/"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_variables_and_grace_agree_with_the_server(overlay):
    objects = render(overlay)
    pod = one(objects, "Deployment", "completion")["spec"]["template"]["spec"]
    container = completion_container(objects)
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/v1/health", probe
    env = {e["name"]: e["value"] for e in container["env"]}
    flags = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert set(env) <= flags, f"not server flags: {sorted(set(env) - flags)}"
    drain_s = float(env["SERVICE_DRAIN_TIMEOUT_S"])
    pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # SIGTERM comes after preStop; the server then needs the drain plus a few seconds to exit.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + drain_s + 5
    liveness = container["livenessProbe"]
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"]
        > (pod["terminationGracePeriodSeconds"])
    ), "a draining pod (health 503) would be restarted by its liveness probe"
    assert env["SERVICE_REDIS_URL"].startswith("redis://completion-redis:")
    one(objects, "Service", "completion-redis")


def test_only_the_gpu_overlay_requests_gpus_and_runs_on_cuda():
    for overlay in OVERLAYS:
        container = completion_container(render(overlay))
        requests = container["resources"]["requests"]
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        args = container["args"]
        if overlay == "gpu":
            assert gpus == requests["nvidia.com/gpu"] == "1"
            assert args[args.index("--device") + 1] == "cuda"
        else:
            assert gpus is None and "nvidia.com/gpu" not in requests
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["SERVICE_DEVICE"] == "cpu"
        assert requests["cpu"] and requests["memory"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_hashes_sessions_and_the_hpa_scales_on_waiting_requests_then_cpu(overlay):
    objects = render(overlay)
    ingress = one(objects, "Ingress", "completion")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$http_x_session_id"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "completion"

    hpa = one(objects, "HorizontalPodAutoscaler", "completion")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "completion"
    metrics = hpa["spec"]["metrics"]
    assert metrics[0]["type"] == "Pods"
    served = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())
    rules = {rule["name"]["as"]: rule for rule in served["rules"]["custom"]}
    rule = rules[metrics[0]["pods"]["metric"]["name"]]
    # The engine's gauge of waiting requests, summed per pod as it is: a rate() of a gauge
    # would scale on how fast the queue changes, not on how long it is.
    assert rule["seriesQuery"].startswith("engine_requests_waiting{")
    assert rule["metricsQuery"].startswith("sum(<<.Series>>")
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics)

    pdb = one(objects, "PodDisruptionBudget", "completion")
    labels = one(objects, "Deployment", "completion")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["minReplicas"] >= 1


def test_the_adapter_rule_reads_a_metric_the_server_exports():
    from prometheus_client import REGISTRY, generate_latest

    from service.engine import metrics  # noqa: F401  (registers the engine's metrics)

    exported = generate_latest(REGISTRY).decode()
    served = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())
    for rule in served["rules"]["custom"]:
        series = rule["seriesQuery"].split("{")[0]
        assert f"\n{series} " in exported or exported.startswith(f"{series} "), series
