"""worker/multihost.py: the per-job JobSet validates against the vendored JobSet CRD schema and the Kubernetes Job
schema, names itself with DNS labels for any job id, and launches torchrun over the right hosts and GPUs.

Validated, not run: no test here submits a JobSet to a cluster (tests/deploy/schemas/README.md says what is vendored).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.helpers import ROOT
from worker.multihost import WORK_ROOT, jobset_manifest, jobset_name, work_dir

SCHEMA = ROOT / "tests" / "deploy" / "schemas" / "jobset.x-k8s.io_v1alpha2.json"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
JOB_ID = "ftjob-3f9c0a1b2c3d4e5f60718293"  # core.ids.new_id("ftjob")


def _strict(node: Any) -> Any:
    """Unknown fields fail, as `kubectl apply` (field validation Strict) rejects them; the CRD itself only prunes."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k == "properties" else _strict(v)) for k, v in node.items()}
    if "properties" in node:
        out["properties"] = {name: _strict(sub) for name, sub in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@cache
def _validator() -> jsonschema.Draft7Validator:
    schema = _strict(json.loads(SCHEMA.read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(doc)]


def _job(manifest: dict[str, Any]) -> dict[str, Any]:
    [rjob] = manifest["spec"]["replicatedJobs"]
    return dict(rjob["template"]["spec"])


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    [container] = _job(manifest)["template"]["spec"]["containers"]
    return dict(container)


SHAPES = [
    {"nodes": 2, "gpus_per_node": 8},
    {"nodes": 4, "gpus_per_node": 1, "hosts": ["gpu-d", "gpu-a", "gpu-c", "gpu-b"]},
    {"nodes": 64, "gpus_per_node": 8, "image": "registry.example/tunepool-worker:1.2", "env": {"NCCL_DEBUG": "WARN"}},
]


@pytest.mark.parametrize("shape", SHAPES, ids=["2x8", "4x1-pinned", "64x8-env"])
def test_manifest_validates_against_the_vendored_jobset_schema(shape: dict[str, Any]) -> None:
    manifest = jobset_manifest(JOB_ID, 3, **shape)
    assert manifest["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and manifest["kind"] == "JobSet"
    assert _errors(manifest) == []


def test_the_schema_check_catches_typos_and_wrong_types() -> None:
    manifest = jobset_manifest(JOB_ID, 0, nodes=2, gpus_per_node=8)
    manifest["spec"]["failurePolicy"] = {"maxRestart": 0}
    manifest["spec"]["replicatedJobs"][0]["replicas"] = "1"
    _job(manifest)["template"]["spec"]["containers"][0]["resources"]["limit"] = {}
    errors = _errors(manifest)
    assert any(e.startswith("spec/failurePolicy:") and "'maxRestart'" in e for e in errors), errors
    assert any(e.startswith("spec/replicatedJobs/0/replicas:") for e in errors), errors
    assert any("containers/0/resources:" in e and "'limit'" in e for e in errors), errors


def test_the_crd_rules_jsonschema_cannot_check_do_not_apply_to_a_new_jobset() -> None:
    rules: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            rules.update(r["rule"] for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(SCHEMA.read_text()))
    # Immutability (updates only), StartupPolicy vs DependsOn, volumeClaimPolicies: the manifest sets none of those.
    assert rules == {
        "self == oldSelf",
        "!(has(self.startupPolicy) && self.startupPolicy.startupPolicyOrder == 'InOrder'"
        " && self.replicatedJobs.exists(x, has(x.dependsOn)))",
        "self.templates.all(t, !has(t.metadata.namespace) || size(t.metadata.namespace) == 0)",
    }
    spec = jobset_manifest(JOB_ID, 0, nodes=2, gpus_per_node=8)["spec"]
    assert not {"startupPolicy", "volumeClaimPolicies"} & set(spec)
    assert all("dependsOn" not in rjob for rjob in spec["replicatedJobs"])


@pytest.mark.parametrize("shape", SHAPES, ids=["2x8", "4x1-pinned", "64x8-env"])
def test_job_template_validates_against_the_kubernetes_schema(shape: dict[str, Any]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (bundles the schemas)")
    manifest = jobset_manifest(JOB_ID, 3, **shape)
    [rjob] = manifest["spec"]["replicatedJobs"]
    # The Job JobSet creates from the template (its name: <jobset>-<replicatedJob>-<job index>); its pod spec included.
    name = f"{manifest['metadata']['name']}-{rjob['name']}-0"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, **rjob["template"]["metadata"]}}
    kv.validate({**job, "spec": rjob["template"]["spec"]}, kv.latest_version(), strict=True)


ODD_IDS = [
    JOB_ID,
    "FTJOB_ABC.def",
    "42",
    "ftjob-" + "x" * 200,
    "ftjob-ünïcödé",
    "-leading-and-trailing-",
    "___",
    "ftjob-abc/../../etc",
]


@pytest.mark.parametrize("job_id", ODD_IDS)
def test_names_are_dns_labels_that_fit_jobset_pod_names(job_id: str) -> None:
    manifest = jobset_manifest(job_id, 123456, nodes=100, gpus_per_node=8)
    name = manifest["metadata"]["name"]
    assert DNS_1035.match(name), name
    # JobSet's webhook: the longest pod name `<jobset>-<rjob>-<job idx>-<pod idx>-<5 chars>` is a DNS-1035 label.
    longest_pod = f"{name}-{manifest['spec']['replicatedJobs'][0]['name']}-0-99-abcde"
    assert DNS_1035.match(longest_pod) and len(longest_pod) <= 63, longest_pod
    assert manifest["spec"]["network"]["subdomain"] == name  # the headless Service: a DNS-1035 label too
    assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in manifest["metadata"]["labels"].values())
    assert manifest["metadata"]["annotations"]["tunepool/job-id"] == job_id  # the exact id survives
    workdir = PurePosixPath(work_dir(job_id))
    assert str(workdir.parent) == WORK_ROOT and workdir.name not in ("", ".", "..")  # one directory under the root


def test_names_keep_ordinary_ids_and_keep_odd_ids_apart() -> None:
    assert jobset_name(JOB_ID, 3) == f"{JOB_ID}-a3"
    names = {jobset_name(job_id, 0) for job_id in [*ODD_IDS, "ftjob_abc", "FTJOB-ABC", "ftjob.abc"]}
    assert len(names) == len(ODD_IDS) + 3
    assert jobset_name(JOB_ID, 1) != jobset_name(JOB_ID, 2)  # a retry never collides with the JobSet it replaces
    for job_id, attempt in [("", 0), (JOB_ID, 10**6)]:
        with pytest.raises(ValueError):
            jobset_name(job_id, attempt)
    with pytest.raises(ValueError, match="one node"):
        jobset_manifest(JOB_ID, 0, nodes=1001, gpus_per_node=8)  # pod names would outgrow their 63 characters


def _flags(command: list[str]) -> dict[str, str]:
    start = command.index("torchrun") + 1
    end = command.index("-m", start)
    args = command[start:end]
    return dict(zip(args[::2], args[1::2], strict=True))


def test_torchrun_spans_the_nodes_and_meets_at_pod_zero() -> None:
    manifest = jobset_manifest(JOB_ID, 3, nodes=4, gpus_per_node=8)
    command = _container(manifest)["command"]
    flags = _flags(command)
    assert flags["--nnodes"] == "4" and flags["--nproc-per-node"] == "8" and flags["--rdzv-backend"] == "c10d"
    assert flags["--max-restarts"] == "0"
    # JobSet's hostname for pod 0 of job 0: <jobset>-<replicatedJob>-0-0.<subdomain>
    name, [rjob] = manifest["metadata"]["name"], manifest["spec"]["replicatedJobs"]
    leader = f"{name}-{rjob['name']}-0-0.{manifest['spec']['network']['subdomain']}"
    assert flags["--rdzv-endpoint"] == f"{leader}:29500" and flags["--rdzv-id"] == name
    assert manifest["spec"]["network"]["enableDNSHostnames"] is True
    assert {"name": "rdzv", "containerPort": 29500} in _container(manifest)["ports"]
    workdir = work_dir(JOB_ID)
    assert command[-5:] == ["-m", "worker.job_process", JOB_ID, workdir, "3"]
    assert workdir in {m["mountPath"] for m in _container(manifest)["volumeMounts"]}
    # Kubernetes would expand `$(NAME)` in a command before the shell sees it.
    assert not any("$(" in part for part in command)


def _launched(command: list[str], index: str, tmp_path: Path) -> list[str]:
    """The argv the container's shell hands python, as pod `index` of the Job (a stand-in python records it)."""
    assert command[:4] == ["tini", "--", "sh", "-c"]
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "JOB_COMPLETION_INDEX": index}
    out = subprocess.run(["sh", "-c", *command[4:]], env=env, capture_output=True, text=True, check=True, timeout=30)
    return list(json.loads(out.stdout))


def test_pod_zero_alone_hosts_the_rendezvous_and_torchrun_reads_the_command_as_meant(tmp_path: Path) -> None:
    command = _container(jobset_manifest(JOB_ID, 3, nodes=4, gpus_per_node=8))["command"]
    argvs = {index: _launched(command, index, tmp_path) for index in ("0", "1", "3")}
    assert argvs["0"][:5] == ["-m", "torch.distributed.run", "--rdzv-conf", "is_host=1", "--nnodes"]
    assert argvs["1"][3] == argvs["3"][3] == "is_host=0"
    run = pytest.importorskip("torch.distributed.run", reason="the training stack (torch) is not installed")
    args = run.get_args_parser().parse_args(argvs["0"][2:])
    assert run.parse_min_max_nnodes(args.nnodes) == (4, 4)  # a fixed size: no elastic shrinking
    assert args.nproc_per_node == "8" and args.rdzv_backend == "c10d" and args.max_restarts == 0
    assert args.rdzv_conf == "is_host=1" and args.rdzv_endpoint.endswith(f".{jobset_name(JOB_ID, 3)}:29500")
    assert args.module and args.training_script == "worker.job_process"
    assert args.training_script_args == [JOB_ID, work_dir(JOB_ID), "3"]


def test_pods_get_the_service_settings_and_secrets_like_the_one_host_workers() -> None:
    manifest = jobset_manifest(
        JOB_ID, 0, nodes=2, gpus_per_node=8, env={"NCCL_DEBUG": "INFO", "TUNEPOOL_DEVICE": "cuda"}
    )
    container = _container(manifest)
    refs = [r.get("configMapRef", r.get("secretRef")) for r in container["envFrom"]]
    assert {"configMapRef": {"name": "tunepool-config"}} in container["envFrom"]
    assert {"secretRef": {"name": "tunepool-secrets"}} in container["envFrom"] and len(refs) == 2
    [secret] = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/secret.example.yaml").read_text()) if d]
    assert secret["metadata"]["name"] == "tunepool-secrets"
    assert {"DATABASE_URL", "REDIS_URL"} <= set(secret["stringData"])
    env = [e["name"] for e in container["env"]]
    assert env == sorted(env) and len(env) == len(set(env)) and {"NCCL_DEBUG", "TUNEPOOL_DEVICE"} <= set(env)


def test_a_lost_rank_fails_the_jobset_and_each_host_gets_its_gpus() -> None:
    manifest = jobset_manifest(JOB_ID, 5, nodes=3, gpus_per_node=4, hosts=["gpu-2", "gpu-0", "gpu-1"])
    assert manifest["spec"]["failurePolicy"] == {"maxRestarts": 0}
    job = _job(manifest)
    assert job["parallelism"] == job["completions"] == 3 and job["completionMode"] == "Indexed"
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    resources = _container(manifest)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 4
    pod = job["template"]["spec"]
    [anti] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert anti["labelSelector"]["matchLabels"] == {"jobset.sigs.k8s.io/jobset-name": manifest["metadata"]["name"]}
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu-0", "gpu-1", "gpu-2"]}
    ]
    labels = manifest["metadata"]["labels"]
    assert labels["tunepool/job-id"] == JOB_ID and labels["tunepool/attempt"] == "5"
    assert job["template"]["metadata"]["labels"] == labels
    with pytest.raises(ValueError):
        jobset_manifest(JOB_ID, 5, nodes=3, gpus_per_node=4, hosts=["gpu-0", "gpu-0", "gpu-1"])


def test_output_is_deterministic() -> None:
    a = jobset_manifest(JOB_ID, 1, nodes=2, gpus_per_node=8, env={"B": "2", "A": "1"}, hosts=["h2", "h1"])
    b = jobset_manifest(JOB_ID, 1, nodes=2, gpus_per_node=8, env={"A": "1", "B": "2"}, hosts=["h1", "h2"])
    assert json.dumps(a) == json.dumps(b)


def test_cli_prints_the_manifest_as_yaml_and_json() -> None:
    argv = [JOB_ID, "--nodes", "2", "--gpus-per-node", "8", "--attempt", "3", "--env", "NCCL_DEBUG=WARN"]
    expected = jobset_manifest(JOB_ID, 3, nodes=2, gpus_per_node=8, env={"NCCL_DEBUG": "WARN"})
    cmd = [sys.executable, "-m", "worker.multihost", *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, timeout=60).stdout
    assert yaml.safe_load(out) == expected and "&id" not in out  # plain YAML, no anchors
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True, cwd=ROOT, timeout=60).stdout
    assert json.loads(out) == expected
    bad = subprocess.run([*cmd, "--env", "NOVALUE"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
