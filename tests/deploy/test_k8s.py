"""deploy/k8s: every manifest validates against the Kubernetes API schemas, and the pieces refer to each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import ROOT, setting_env_names

K8S = ROOT / "deploy" / "k8s"


def _docs() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = []
    for name in kustomization["resources"]:
        out += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return out


def _find(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in _docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["spec"]["template"]["spec"])


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_manifest_validates_against_the_kubernetes_schema(path: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (bundles the schemas)")
    for doc in yaml.safe_load_all((K8S / path).read_text()):
        # strict: unknown fields (typos such as `livenesProbe`) fail too.
        kv.validate(doc, kv.latest_version(), strict=True)


def test_workloads_select_their_own_pods_and_run_non_root_with_limits() -> None:
    for doc in _docs():
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        selector = doc["spec"].get("selector", {}).get("matchLabels", {})
        assert selector.items() <= labels.items(), doc["metadata"]["name"]
        pod = _pod(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        for c in pod["containers"]:
            assert c["resources"]["limits"]["memory"], c["name"]
            refs = {r.get("configMapRef", r.get("secretRef", {})).get("name") for r in c["envFrom"]}
            assert refs == {"tunepool-config", "tunepool-secrets"}
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
            assert mounts <= {v["name"] for v in pod.get("volumes", [])} | claims, c["name"]


def test_api_service_hpa_and_pdb_point_at_the_api_pods_with_probes() -> None:
    api = _find("Deployment", "tunepool-api")
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    service = _find("Service", "tunepool-api")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [container] = _pod(api)["containers"]
    ports = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hpa = _find("HorizontalPodAutoscaler", "tunepool-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tunepool-api"}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = _find("PodDisruptionBudget", "tunepool-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a drain can always proceed


def test_gpu_workers_request_one_gpu_each_on_gpu_nodes() -> None:
    worker = _find("StatefulSet", "tunepool-worker")
    pod = _pod(worker)
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert container["livenessProbe"]["exec"]["command"] == ["python", "-m", "worker.health"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TUNEPOOL_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # stable ids
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    claim = _find("PersistentVolumeClaim", cache["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by every worker
    pdb = _find("PodDisruptionBudget", "tunepool-worker")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert _find("Deployment", "tunepool-dispatcher")["spec"]["replicas"] == 1
    job = _find("Job", "tunepool-migrate")
    assert _pod(job)["containers"][0]["command"] == ["python", "-m", "db.migrate"]


def test_configmap_and_secret_set_only_real_settings() -> None:
    known = setting_env_names()
    config = _find("ConfigMap", "tunepool-config")["data"]
    secret = _find("Secret", "tunepool-secrets")["stringData"]
    for key in [*config, *secret]:
        assert key in known or key == "models.toml", key
    assert {"DATABASE_URL", "REDIS_URL", "TUNEPOOL_S3_SECRET_ACCESS_KEY"} <= set(secret)  # secrets not in the ConfigMap
    import tomllib

    models = tomllib.loads(config["models.toml"])["models"]
    assert all(Path(m["path"]).is_relative_to(config["TUNEPOOL_MODEL_CACHE_DIR"]) for m in models.values())


def test_vllm_serves_with_runtime_lora_beside_a_sidecar_sharing_its_adapter_volume() -> None:
    deployment = _find("Deployment", "tunepool-vllm")
    pod = _pod(deployment)
    containers = {c["name"]: c for c in pod["containers"]}
    vllm, sidecar = containers["vllm"], containers["sidecar"]
    assert vllm["command"] == ["vllm", "serve"] and "--enable-lora" in vllm["args"]
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in vllm["env"]
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    flags = {a.split("=", 1)[0]: a.split("=", 1)[-1] for a in vllm["args"] + sidecar["args"]}
    assert flags["--max-loras"] == "8" and sidecar["command"] == ["python", "-m", "worker.serving.registrar"]
    assert flags["--vllm-url"] == "http://127.0.0.1:8001" and "--port=8001" in vllm["args"]
    # vLLM reads adapters from the directory the sidecar unpacks them into; the model from the shared cache.
    mounts = {c: {m["name"]: m["mountPath"] for m in containers[c]["volumeMounts"]} for c in containers}
    assert mounts["vllm"]["adapters"] == mounts["sidecar"]["adapters"] == flags["--adapter-dir"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache["persistentVolumeClaim"]["claimName"] == "tunepool-model-cache"
    model = vllm["args"][0]
    assert model.startswith(mounts["vllm"]["model-cache"]) and flags["--served-model-name"] == flags["--base-model"]
    config = _find("ConfigMap", "tunepool-config")["data"]
    import tomllib

    registry = tomllib.loads(config["models.toml"])["models"]
    assert registry[flags["--base-model"]]["path"] == model  # the API routes the registry name to this pod
