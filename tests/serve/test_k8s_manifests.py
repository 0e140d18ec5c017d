"""deploy/k8s: every object validates against the Kubernetes schemas (offline); the pieces fit together."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # oldest release the manifests target (autoscaling/v2, appProtocol, ...)


def _objects() -> dict[tuple[str, str], dict]:
    yaml = pytest.importorskip("yaml")
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


@pytest.fixture(scope="module")
def objects():
    return _objects()


def test_every_manifest_validates_against_the_kubernetes_schema(objects):
    kv = pytest.importorskip("kubernetes_validate")
    assert len(objects) >= 6
    for key, doc in objects.items():
        try:
            kv.validate(doc, KUBERNETES_VERSION, strict=True)  # strict: unknown fields are errors too
        except kv.ValidationError as exc:
            pytest.fail(f"{key}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_schema_validation_catches_a_typo():
    kv = pytest.importorskip("kubernetes_validate")
    doc = _objects()[("Deployment", "vggx-triton")]
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = doc["spec"]["template"]["spec"][
        "containers"][0].pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    yaml = pytest.importorskip("yaml")
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_deployment_runs_triton_on_a_gpu_with_health_probes(objects):
    deploy = objects[("Deployment", "vggx-triton")]
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "model-repository")
    assert f"--model-repository={mount['mountPath']}" in c["args"]
    volume = next(v for v in pod["volumes"] if v["name"] == "model-repository")
    assert volume["persistentVolumeClaim"]["claimName"] in {name for kind, name in objects
                                                           if kind == "PersistentVolumeClaim"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert {f"--{k}-port={v}" for k, v in ports.items()} <= set(c["args"])


def test_services_select_the_deployments_pods(objects):
    labels = objects[("Deployment", "vggx-triton")]["spec"]["template"]["metadata"]["labels"]
    services = [doc for (kind, _), doc in objects.items() if kind == "Service"]
    assert len(services) == 2
    for svc in services:
        assert svc["spec"]["selector"].items() <= labels.items()
        assert {"http", "grpc"} <= {p["targetPort"] for p in svc["spec"]["ports"]}


def test_autoscaler_scales_the_deployment_on_a_triton_metric(objects):
    hpa = objects[("HorizontalPodAutoscaler", "vggx-triton")]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vggx-triton"}
    assert hpa["spec"]["scaleTargetRef"] == target
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    rules = objects[("ConfigMap", "vggx-prometheus-adapter-rules")]["data"]["config.yaml"]
    assert f'as: "{name}"' in rules
    assert "nv_inference_queue_duration_us" in rules  # Triton's counter (seen live in test_triton_server)
    assert hpa["spec"]["minReplicas"] >= 1 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def test_the_api_key_component_restricts_what_vggx_serve_does():
    """``deploy/k8s/api-key``: its patch applied to the Deployment (RFC 6902, as kustomize applies it) still
    validates, reads the key from the Secret, and restricts the APIs ``vggx serve --api-key`` restricts."""
    yaml = pytest.importorskip("yaml")
    jsonpatch = pytest.importorskip("jsonpatch")
    kv = pytest.importorskip("kubernetes_validate")
    from vggx.server import API_KEY_HEADER, RESTRICTED_APIS, ServerConfig, TritonInstall, TritonServer

    component = yaml.safe_load((K8S / "api-key" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    (entry,) = component["patches"]
    assert entry["target"]["kind"] == "Deployment" and entry["target"]["name"] == "vggx-triton"
    patched = jsonpatch.apply_patch(_objects()[("Deployment", "vggx-triton")], yaml.safe_load(entry["patch"]))
    kv.validate(patched, KUBERNETES_VERSION, strict=True)
    (c,) = patched["spec"]["template"]["spec"]["containers"]
    assert c["env"] == [{"name": "VGGX_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vggx-api-key", "key": "key"}}}]
    # the same flags vggx serve writes for a key (with Kubernetes' $(VAR) where the key goes)
    key = "k" * 16
    server = TritonServer(ServerConfig(api_key=key))
    ours = [a for a in server.command(TritonInstall(Path("tritonserver")), _endpoints()) if "restricted" in a]
    assert [a.replace(key, "$(VGGX_API_KEY)") for a in ours] == [a for a in c["args"] if "restricted" in a]
    assert all(f":{API_KEY_HEADER}=" in a and ",".join(RESTRICTED_APIS) in a for a in ours) and len(ours) == 2


def _endpoints():
    from vggx.server import Endpoints

    return Endpoints("127.0.0.1", 8000, 8001, 8002)


# The NGC Triton images and the TensorRT each ships (Frameworks Support Matrix / Triton's compatibility page). The
# default `trt` flavour's plugins need TensorRT's AOT plugin API; an engine is tied to the TensorRT that built it.
NGC_TRITON_TENSORRT = {"24.10-py3": "10.5.0", "24.12-py3": "10.7.0", "25.01-py3": "10.8.0.43", "25.03-py3": "10.9.0.34"}


def test_the_triton_image_runs_the_plugins_and_matches_the_gpu_extras_tensorrt(objects):
    from vggx.plugins.tensorrt import MIN_TENSORRT

    (c,) = objects[("Deployment", "vggx-triton")]["spec"]["template"]["spec"]["containers"]
    tag = c["image"].rpartition(":")[2]
    shipped = NGC_TRITON_TENSORRT[tag]
    assert tuple(map(int, shipped.split(".")[:2])) >= MIN_TENSORRT, f"{tag} ships TensorRT {shipped}: no AOT plugins"
    root = K8S.parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert f"tensorrt=={shipped}" in extras  # `vggx export --fp16` builds the plan the image loads
    readme = (root / "README.md").read_text()
    assert f"nvcr.io/nvidia/tritonserver:{tag}" in readme
    assert set(re.findall(r"nvcr\.io/nvidia/tritonserver:([\w.-]+)", readme)) == {tag}
    assert f"TensorRT {shipped}" in readme
