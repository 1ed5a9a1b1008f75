"""What each workload of the rendered overlays must be: locked down, probed, sized, and wired as Spotter needs.

TFS: the official image, its config files from the ConfigMaps, readiness from the model's REST status, the model
volume read-only, GPUs only in the gpu overlay. Gateway: health and readiness probes, a shutdown long enough to drain
its batches, autoscaling and a disruption budget. Worker: the only writer of the model volume, a GPU in the gpu
overlay.
"""

from __future__ import annotations

from typing import Any

from tests.deploy.support import (
    TFS_FILE_FLAGS,
    TFS_FLAGS,
    TFS_REQUIRED_FLAGS,
    Doc,
    container,
    find,
    flags,
    of_kind,
    workloads,
)
from tests.deploy.test_tfs_config import model_config

GPU = "nvidia.com/gpu"
GPU_WORKLOADS = {"spotter-tfs", "spotter-worker"}


def _mounts(spec: dict[str, Any], container_spec: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """mountPath -> (volumeMount, volume)."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container_spec.get("volumeMounts", [])}


def test_pods_run_locked_down(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    for name, spec in workloads(docs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] >= 10000, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name}: {bound}"
            assert "readinessProbe" in c and "livenessProbe" in c, name
            tag = c["image"].rpartition(":")[2]
            assert ":" in c["image"] and tag != "latest", f"{name}: pin the image tag, not {c['image']}"
            # A read-only root needs somewhere to write: scratch space on an emptyDir.
            writable = {path: volume for path, (mount, volume) in _mounts(spec, c).items() if not mount.get("readOnly")}
            scratch = "/data" if name == "spotter-redis" else "/tmp"
            assert "emptyDir" in writable.get(scratch, {}), f"{name}: no emptyDir at {scratch}"


def test_only_the_worker_writes_models(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    writers = []
    for name, spec in workloads(docs):
        for c in spec["containers"]:
            for path, (mount, volume) in _mounts(spec, c).items():
                claim = volume.get("persistentVolumeClaim", {})
                if claim.get("claimName") != "spotter-models":
                    continue
                assert path == "/models", name
                if not (mount.get("readOnly") and claim.get("readOnly")):
                    writers.append(name)
    assert writers == ["spotter-worker"]
    # The gateway reads the repository (submit-time checks of jobs naming a published model), read-only.
    gateway = find(docs, "Deployment", "spotter-gateway")["spec"]["template"]["spec"]
    assert "spotter-models" in {v.get("persistentVolumeClaim", {}).get("claimName") for v in gateway["volumes"]}


def test_tfs_serves_the_shared_models_with_its_config(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    spec = find(docs, "Deployment", "spotter-tfs")["spec"]["template"]["spec"]
    tfs = container(docs, "spotter-tfs", "tfs")
    image, _, tag = tfs["image"].rpartition(":")
    assert image == "tensorflow/serving"
    assert tag.endswith("-gpu") == (name == "gpu")
    assert tfs["command"] == ["tensorflow_model_server"]
    args = flags(tfs["args"])
    assert set(args) <= TFS_FLAGS, f"unknown TFS flags: {set(args) - TFS_FLAGS}"
    assert TFS_REQUIRED_FLAGS.items() <= args.items()
    assert int(args["model_config_file_poll_wait_seconds"]) > 0, "models.config must be re-read for label moves"
    # Each config file named on the command line is a key of the ConfigMaps mounted at its folder.
    mounts = _mounts(spec, tfs)
    for flag in TFS_FILE_FLAGS:
        folder, _, filename = args[flag].rpartition("/")
        _, volume = mounts[folder]
        keys = set()
        for source in volume["projected"]["sources"]:
            keys |= set(find(docs, "ConfigMap", source["configMap"]["name"])["data"])
        assert filename in keys, f"--{flag}={args[flag]}"
    # Readiness: the REST status of a model that models.config serves, on the REST port.
    served = {m.name for m in model_config().model_config_list.config}
    for probe in ("startupProbe", "readinessProbe"):
        get = tfs[probe]["httpGet"]
        assert get["port"] == "rest"
        prefix, _, model = get["path"].rpartition("/")
        assert prefix == "/v1/models" and model in served, get["path"]
    ports = {p["name"]: p["containerPort"] for p in tfs["ports"]}
    assert ports == {"grpc": int(args["port"]), "rest": int(args["rest_api_port"])}


def test_gpus_only_where_the_gpu_overlay_puts_them(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    for workload, spec in workloads(docs):
        c = spec["containers"][0]
        gpu_limit = c["resources"]["limits"].get(GPU)
        tolerated = {t.get("key") for t in spec.get("tolerations", [])}
        if name == "gpu" and workload in GPU_WORKLOADS:
            assert gpu_limit == "1", workload
            assert spec["nodeSelector"], f"{workload} must be scheduled on GPU nodes"
            assert GPU in tolerated, workload
            # Rollouts must not need a spare GPU.
            assert find(docs, "Deployment", workload)["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
        else:
            assert gpu_limit is None and GPU not in tolerated, f"{workload} in {name}"
    worker_image = container(docs, "spotter-worker")["image"]
    assert ("-gpu:" in worker_image) == (name == "gpu")


def test_gateway_probes_drains_and_scales(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    deployment = find(docs, "Deployment", "spotter-gateway")
    spec = deployment["spec"]["template"]["spec"]
    gateway = container(docs, "spotter-gateway")
    assert gateway["args"] == ["gateway"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Shutdown: the preStop pause, then every request it holds answered within the request timeout.
    configmap = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("spotter-gateway"))
    timeout = float(configmap["data"]["SPOTTER_REQUEST_TIMEOUT_SECONDS"])
    pause = int(gateway["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > pause + timeout
    # The model server it calls is the Service in front of TFS, on its gRPC port.
    host, _, port = configmap["data"]["SPOTTER_TFS_GRPC"].partition(":")
    service = find(docs, "Service", host)
    assert {"name": "grpc", "port": int(port)}.items() <= next(
        p for p in service["spec"]["ports"] if p["name"] == "grpc"
    ).items()
    assert configmap["data"]["SPOTTER_MODEL_CONFIG_FILE"] == "/etc/tfs/models.config"
    assert "/etc/tfs" in _mounts(spec, gateway)
    # Autoscaling on CPU and on in-flight requests (a custom pods metric), never below two pods.
    scaler = find(docs, "HorizontalPodAutoscaler", "spotter-gateway")["spec"]
    kinds = {
        ("Resource", m["resource"]["name"]) if m["type"] == "Resource" else (m["type"], m["pods"]["metric"]["name"])
        for m in scaler["metrics"]
    }
    assert kinds == {("Resource", "cpu"), ("Pods", "spotter_inflight_requests")}
    assert scaler["minReplicas"] >= 2
    budget = find(docs, "PodDisruptionBudget", "spotter-gateway")["spec"]
    assert budget["minAvailable"] < scaler["minReplicas"]


def test_worker_runs_jobs_with_the_shared_volumes(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    spec = find(docs, "Deployment", "spotter-worker")["spec"]["template"]["spec"]
    worker = container(docs, "spotter-worker")
    assert worker["args"] == ["worker"]
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {"metrics": 9100}
    mounts = _mounts(spec, worker)
    assert mounts["/models"][1]["persistentVolumeClaim"]["claimName"] == "spotter-models"
    assert mounts["/data"][1]["persistentVolumeClaim"]["claimName"] == "spotter-data"
    # Long enough for RQ's warm shutdown of an import, an evaluation or an export.
    assert spec["terminationGracePeriodSeconds"] >= 120
    for claim in of_kind(docs, "PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], claim["metadata"]["name"]
