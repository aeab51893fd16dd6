"""`python -m worker.multihost JOB_ID --nodes N --gpus-per-node G`: the Kubernetes JobSet that trains one job across
hosts (no torch, no database here; the dispatcher submits it once it has reserved the hosts).

One replicated Job of N indexed pods, one pod per host, each running torchrun with G processes; the pods meet through
torchrun's c10d rendezvous on pod 0, reached by the hostname JobSet gives it under its headless service
(`<jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<subdomain>`, JobSet docs "DNS hostnames for Pods").
A lost rank fails its pod, the Job (backoffLimit 0) and the JobSet (maxRestarts 0); the dispatcher re-queues the job,
which resumes from its last checkpoint under the next attempt's JobSet."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"
REPLICATED_JOB = "node"
CONTAINER = "trainer"
RDZV_PORT = 29500
# The image's TUNEPOOL_DATA_DIR/work, where worker.runner puts a job's scratch directory on one host.
WORK_ROOT = "/var/lib/tunepool/work"
CONFIG_MAP = "tunepool-config"
SECRET = "tunepool-secrets"  # DATABASE_URL, REDIS_URL and the S3 keys, as for deploy/k8s/worker.yaml
LABEL_JOB, LABEL_ATTEMPT = "tunepool/job-id", "tunepool/attempt"
ANNOTATION_JOB = "tunepool/job-id"  # the exact id, when the label had to be made DNS-safe
# JobSet's webhook requires `<jobset>-node-0-<last pod index>-xxxxx` (the pod name) to be a DNS-1035 label (63 chars);
# 45 leaves room for 3-digit pod indexes.
MAX_NAME = 45
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Per GPU, as deploy/k8s/worker.yaml asks for its one-GPU pods.
CPU_PER_GPU, MEMORY_REQUEST_GIB_PER_GPU, MEMORY_LIMIT_GIB_PER_GPU = 4, 32, 64


def job_slug(job_id: str) -> str:
    """The job id as a DNS-1035 label: itself when it already is one, else a cleaned prefix plus a hash of the id."""
    if not job_id:
        raise ValueError("empty job id")
    budget = MAX_NAME - len("-a") - 6  # room for the attempt suffix (up to 6 digits)
    if _DNS_LABEL.match(job_id) and len(job_id) <= budget:
        return job_id
    cleaned = re.sub(r"[^a-z0-9]+", "-", job_id.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"j-{cleaned}".rstrip("-")
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]  # keeps ids that clean to the same text apart
    return f"{cleaned[: budget - len(digest) - 1].rstrip('-')}-{digest}"


def jobset_name(job_id: str, attempt: int) -> str:
    """One name per claim, so a retry never collides with the JobSet of the attempt it replaces."""
    if not 0 <= attempt < 10**6:  # the name budget leaves six digits for it
        raise ValueError(f"attempt must be in [0, 999999], not {attempt}")
    return f"{job_slug(job_id)}-a{attempt}"


def leader_address(name: str) -> str:
    """host:port of pod 0's rendezvous: its JobSet hostname under the headless service named after the JobSet."""
    return f"{name}-{REPLICATED_JOB}-0-0.{name}:{RDZV_PORT}"


def work_dir(job_id: str) -> str:
    return f"{WORK_ROOT}/{job_slug(job_id)}"


# Pod 0 hosts the rendezvous store. torchrun guesses that by resolving the endpoint, which fails if pod 0 starts before
# its DNS record exists; the Job's completion index says it for sure. No `$(` here: Kubernetes expands `$(NAME)`.
LAUNCH = (
    'test "$JOB_COMPLETION_INDEX" = 0 && host=1 || host=0; '
    'exec python -m torch.distributed.run --rdzv-conf "is_host=$host" "$@"'
)


def torchrun_command(job_id: str, attempt: int, *, nodes: int, gpus_per_node: int) -> list[str]:
    """The container's command: torchrun over `nodes` hosts, `gpus_per_node` ranks each, into worker.job_process.

    No --node-rank: torchrun ignores it for the c10d backend (it assigns node ranks as agents join), so global rank 0,
    the one that reports, is a rank torchrun picks, not necessarily on pod 0."""
    name = jobset_name(job_id, attempt)
    return [
        "tini", "--",  # forwards the kubelet's SIGTERM to torchrun, which stops its ranks
        "sh", "-c", LAUNCH, "torchrun",  # what follows are torchrun's arguments ("$@")
        "--nnodes", str(nodes),
        "--nproc-per-node", str(gpus_per_node),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", leader_address(name),
        "--rdzv-id", name,  # a straggler pod of an earlier attempt cannot join this one
        "--max-restarts", "0",  # a failed rank fails the pod; recovery is the dispatcher's re-queue
        "-m", "worker.job_process", job_id, work_dir(job_id), str(attempt),
    ]  # fmt: skip


def jobset_manifest(
    job_id: str,
    attempt: int,
    *,
    nodes: int,
    gpus_per_node: int,
    image: str = "tunepool-worker",
    namespace: str = "tunepool",
    env: Mapping[str, str] | None = None,
    hosts: Sequence[str] = (),
) -> dict[str, Any]:
    """The JobSet of one attempt of a job over `nodes` hosts of `gpus_per_node` GPUs; `hosts` pins it to those."""
    if not 1 <= nodes <= 1000 or gpus_per_node < 1:  # MAX_NAME leaves three digits for the pod index
        raise ValueError(f"need at least one node and one GPU per node, not {nodes} x {gpus_per_node}")
    if hosts and len(set(hosts)) != nodes:
        raise ValueError(f"{nodes} nodes but {len(set(hosts))} distinct reserved hosts")
    name = jobset_name(job_id, attempt)

    def labels() -> dict[str, str]:  # a fresh copy each time, so the YAML has no anchors for kubectl readers
        return {"app.kubernetes.io/part-of": "tunepool", LABEL_JOB: job_slug(job_id), LABEL_ATTEMPT: str(attempt)}

    job_spec = {
        "parallelism": nodes,
        "completions": nodes,
        "completionMode": "Indexed",
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels(), "annotations": {ANNOTATION_JOB: job_id}},
            "spec": _pod_spec(job_id, attempt, nodes, gpus_per_node, image, dict(env or {}), list(hosts)),
        },
    }
    return {
        "apiVersion": JOBSET_API_VERSION,
        "kind": "JobSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(), "annotations": {ANNOTATION_JOB: job_id}},
        "spec": {
            "network": {"enableDNSHostnames": True, "subdomain": name},
            "failurePolicy": {"maxRestarts": 0},
            "replicatedJobs": [
                {
                    "name": REPLICATED_JOB,
                    "replicas": 1,
                    "template": {"metadata": {"labels": labels()}, "spec": job_spec},
                }
            ],
        },
    }


def _pod_spec(
    job_id: str, attempt: int, nodes: int, gpus: int, image: str, env: dict[str, str], hosts: list[str]
) -> dict[str, Any]:
    name = jobset_name(job_id, attempt)
    values = {"TUNEPOOL_DEVICE": "cuda", "PYTHONUNBUFFERED": "1", **env}
    # One pod per host: the dispatcher reserved whole hosts, and the ranks of a pod share its host's NVLink.
    affinity: dict[str, Any] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"jobset.sigs.k8s.io/jobset-name": name}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    if hosts:
        term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": sorted(hosts)}]}
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
    return {
        "restartPolicy": "Never",  # JobSet would default OnFailure: a rank restarted alone cannot rejoin the group
        "terminationGracePeriodSeconds": 120,  # as the one-host worker: time for rank 0 to checkpoint
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": affinity,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        "containers": [
            {
                "name": CONTAINER,
                "image": image,
                "command": torchrun_command(job_id, attempt, nodes=nodes, gpus_per_node=gpus),
                "env": [{"name": k, "value": values[k]} for k in sorted(values)],
                "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}, {"secretRef": {"name": SECRET}}],
                "ports": [{"name": "rdzv", "containerPort": RDZV_PORT}],
                "resources": {
                    "requests": {
                        "cpu": str(CPU_PER_GPU * gpus),
                        "memory": f"{MEMORY_REQUEST_GIB_PER_GPU * gpus}Gi",
                        "nvidia.com/gpu": gpus,
                    },
                    "limits": {"memory": f"{MEMORY_LIMIT_GIB_PER_GPU * gpus}Gi", "nvidia.com/gpu": gpus},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/tunepool", "readOnly": True},
                    {"name": "model-cache", "mountPath": "/var/cache/tunepool"},
                    {"name": "work", "mountPath": work_dir(job_id)},
                    {"name": "dshm", "mountPath": "/dev/shm"},  # NCCL's intra-host transport
                ],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [
            {
                "name": "config",
                "configMap": {"name": CONFIG_MAP, "items": [{"key": "models.toml", "path": "models.toml"}]},
            },
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": "tunepool-model-cache"}},
            # Scratch only: checkpoints go to the artifact store, so a re-queued attempt resumes on any hosts.
            {"name": "work", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.multihost", description=__doc__)
    parser.add_argument("job_id")
    parser.add_argument("--nodes", type=int, required=True, help="hosts the job spans (one pod each)")
    parser.add_argument("--gpus-per-node", type=int, required=True, help="GPUs, and torchrun ranks, per host")
    parser.add_argument("--attempt", type=int, default=0, help="the job's claim number (its `attempts`)")
    parser.add_argument("--image", default="tunepool-worker")
    parser.add_argument("--namespace", default="tunepool")
    parser.add_argument("--host", action="append", default=[], help="a reserved node name (repeat per node)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra container env")
    parser.add_argument("--json", action="store_true", help="print JSON (kubectl reads it too; needs no PyYAML)")
    args = parser.parse_args(argv)
    if bad := [item for item in args.env if "=" not in item]:
        parser.error(f"--env takes NAME=VALUE, not {bad[0]!r}")
    env = dict(item.split("=", 1) for item in args.env)
    manifest = jobset_manifest(
        args.job_id,
        args.attempt,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        image=args.image,
        namespace=args.namespace,
        env=env,
        hosts=args.host,
    )
    if args.json:
        print(json.dumps(manifest, indent=2))
        return
    import yaml  # PyYAML comes with the GPU image's training stack, not with the service's dependencies

    print(yaml.safe_dump(manifest, sort_keys=False), end="")


if __name__ == "__main__":
    main()
