"""The images build from what the repository holds, start the console scripts, and the gateway's holds no TensorFlow.

No Docker engine here: the Dockerfiles are read. What the gateway image installs is resolved by pip itself
(`pip install --dry-run --report`) with exactly the requirement and constraints file its runtime stage installs,
against the package index, as the image build would; a second, offline resolution walks the installed packages'
metadata from the project's own requirements and must agree, and shows that the same walk finds TensorFlow in the
worker image (so the check can fail).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import (
    COMPOSE_FILES,
    DEPLOY,
    DOCKERFILES,
    REPO,
    Dockerfile,
    copy_sources,
    dockerignore_rules,
    exec_form,
    files_under,
    load_yaml,
    parse_dockerfile,
    render,
    sent_to_build,
)

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONSOLE_SCRIPTS = set(PYPROJECT["project"]["scripts"])
FORBIDDEN_IN_GATEWAY = {
    canonicalize_name(n)
    for n in (
        "tensorflow",
        "tensorflow-cpu",
        "tensorflow-intel",
        "keras",
        "tensorflow-serving-api",
        "tf-keras",
        "tensorboard",
    )
}
# image target -> (Dockerfile, stage, the `spotter` subcommand it runs)
IMAGES = {
    "gateway": ("gateway", "runtime", "gateway"),
    "worker": ("ml", "worker", "worker"),
    "modelserver": ("ml", "modelserver", "modelserver"),
}


def dockerfile(name: str) -> Dockerfile:
    return parse_dockerfile(DOCKERFILES[name])


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_copy_source_reaches_the_build(name: str) -> None:
    """The context is the repository root, filtered by .dockerignore (an allow-list): whatever a stage COPYs from the
    context must exist and pass the filter, or the build fails."""
    rules = dockerignore_rules(REPO / ".dockerignore")
    parsed = dockerfile(name)
    stage_names = {s.name for s in parsed.stages}
    for stage in parsed.stages:
        for text in stage.all("COPY"):
            sources, _, from_stage = copy_sources(text)
            if from_stage is not None:
                assert from_stage in stage_names, f"COPY --from={from_stage}: no such stage"
                continue
            for source in sources:
                path = REPO / source
                assert path.exists(), f"{name}: COPY {source}: not in the repository"
                sent = [f for f in files_under(path) if sent_to_build(str(f.relative_to(REPO)), rules)]
                assert sent, f"{name}: COPY {source}: .dockerignore keeps it out of the build context"
    # Generated stubs and local caches never ride along (the builder makes the stubs fresh).
    assert not sent_to_build("services/gen/tfs/predict_pb2.py", rules)
    assert not sent_to_build(".venv/bin/python", rules)
    assert not sent_to_build("data/datasets/x/manifest.json", rules)
    assert sent_to_build("services/gateway/__init__.py", rules)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_images_start_the_console_script(image: str) -> None:
    file, stage, command = IMAGES[image]
    parsed = dockerfile(file)
    entrypoint = exec_form(parsed.inherited(stage, "ENTRYPOINT") or "[]")
    cmd = exec_form(parsed.inherited(stage, "CMD") or "[]")
    assert entrypoint == ["spotter"] and "spotter" in CONSOLE_SCRIPTS
    assert cmd == [command]
    # Non-root at run time, by number (Kubernetes' runAsNonRoot can only verify a numeric user).
    user = parsed.inherited(stage, "USER") or ""
    assert re.fullmatch(r"\d+(:\d+)?", user) and int(user.split(":")[0]) >= 10000, user


def _spotter_subcommands() -> set[str]:
    """Every `spotter <command>` the deployment files run."""
    found = {command for _, _, command in IMAGES.values()}
    for name in COMPOSE_FILES:
        for service in load_yaml(DEPLOY / name)["services"].values():
            entry = service.get("entrypoint") or []
            command = service.get("command") or []
            if entry == ["spotter"] and command:
                found.add(command[0])
            for line in command if isinstance(command, list) else [command]:
                found.update(re.findall(r"\bspotter ([a-z][a-z-]*)", line))
    for overlay in ("cpu", "gpu"):
        for doc in render(REPO / "k8s" / "overlays" / overlay):
            if doc["kind"] == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    if "spotter" in c["image"] and c.get("args"):
                        found.add(c["args"][0])
    return found


def test_deployment_commands_exist_in_the_cli() -> None:
    """The commands the images, compose and Kubernetes run are registered in `spotter` (asked in a subprocess, as
    the CLI's command modules must stay importable without TensorFlow)."""
    probe = (
        "import json, typer.main, services.cli as c; print(json.dumps(sorted(typer.main.get_group(c.app).commands)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr
    registered = set(json.loads(result.stdout))
    missing = _spotter_subcommands() - registered
    assert not missing, (
        f"deploy files run `spotter {' / '.join(sorted(missing))}`, which the CLI lacks ({sorted(registered)})"
    )


def _runtime_install(parsed: Dockerfile, stage: str) -> tuple[list[str], Path]:
    """(requirements, constraints file in the repository) of the `pip install` in ``stage`` of ``parsed``."""
    target = parsed.stage(stage)
    copied = {}
    for text in target.all("COPY"):
        sources, destination, from_stage = copy_sources(text)
        if from_stage is None:
            copied[destination] = REPO / sources[0]
    installs = [
        shlex.split(part)
        for text in target.all("RUN")
        for part in text.split("&&")
        if re.search(r"\bpip install\b", part)
    ]
    assert len(installs) == 1, f"expected one pip install in stage {stage}, found {len(installs)}"
    words = installs[0][installs[0].index("install") + 1 :]
    requirements, constraints = [], None
    skip_value = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url", "-f"}
    i = 0
    while i < len(words):
        word = words[i]
        if word in {"-c", "--constraint"}:
            constraints = copied[words[i + 1]]
        if word in skip_value:
            i += 2
            continue
        if not word.startswith("-"):
            requirements.append(word)
        i += 1
    assert constraints is not None, "the runtime install must use requirements/constraints.txt"
    return requirements, constraints


def test_gateway_image_installs_the_base_project_only() -> None:
    requirements, constraints = _runtime_install(dockerfile("gateway"), "runtime")
    assert constraints.resolve() == (REPO / "requirements" / "constraints.txt").resolve()
    # The wheel the builder made from this repository, without extras: the base dependencies only.
    assert requirements == ["/wheels/spotter-*.whl"]


def _project_copy(tmp_path: Path) -> Path:
    """The files pip needs to read the project's metadata, copied aside (pip writes egg-info next to them)."""
    project = tmp_path / "project"
    (project / "services").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    (project / "services" / "__init__.py").touch()
    return project


def test_gateway_image_holds_no_tensorflow(tmp_path: Path) -> None:
    """pip resolves what the runtime stage installs (the project, no extras, the constraints file) as on a fresh
    image; none of it may be TensorFlow, Keras or tensorflow-serving-api."""
    _, constraints = _runtime_install(dockerfile("gateway"), "runtime")
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation",
        "--quiet", "--disable-pip-version-check", "--report", str(report), "-c", str(constraints),
        str(_project_copy(tmp_path)),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    installed = {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    assert not installed & FORBIDDEN_IN_GATEWAY, f"the gateway image would hold {installed & FORBIDDEN_IN_GATEWAY}"
    assert {"fastapi", "grpcio", "uvicorn", "spotter"} <= installed
    assert installed - {"spotter"} == _closure(extras=()), "pip and the offline walk disagree"


def _closure(extras: tuple[str, ...]) -> set[str]:
    """Distributions the project's requirements pull in, walked through the installed packages' metadata (offline).
    The virtual env holds exactly the constrained versions, so this is what the constraints file resolves to."""
    wanted: list[tuple[Requirement, tuple[str, ...]]] = []
    for text in PYPROJECT["project"]["dependencies"]:
        wanted.append((Requirement(text), ()))
    for extra in extras:
        wanted.extend((Requirement(text), ()) for text in PYPROJECT["project"]["optional-dependencies"][extra])
    seen: set[str] = set()
    while wanted:
        requirement, parent_extras = wanted.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in (parent_extras or ("",))):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            wanted.append((Requirement(text), tuple(requirement.extras)))
    return seen


def test_only_the_ml_images_hold_tensorflow() -> None:
    """The offline walk finds TensorFlow where it belongs (the [ml] extra: worker and model server images)."""
    assert FORBIDDEN_IN_GATEWAY & _closure(extras=("ml",)) >= {"tensorflow", "keras", "tensorflow-serving-api"}
    assert not FORBIDDEN_IN_GATEWAY & _closure(extras=())
    ml = dockerfile("ml")
    install = next(t for t in ml.stage("ml").all("RUN") if "pip install" in t)
    assert '"${wheel}[ml]"' in install and "tensorflow[and-cuda]" in install
