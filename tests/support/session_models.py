"""The models the session's shared model server serves (``model_server`` in ``tests/conftest.py``).

Built once per test process, in one subprocess (``tests/support/tiny_models.py``: the caller stays TensorFlow-free),
into ``<base>/root`` with a TFS ``<base>/models.config``; ``<base>/staging`` holds versions tests publish themselves.
A test that needs another tiny model adds it here, so it is built and loaded with the others, instead of starting a
model server of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
DEMO = REPO / "models" / "demo"
TINY_SIZE = 16
WARMUP_RECORDS = 2
LABEL_MAP = """
item { id: 1 name: "ball" }
item { id: 2 name: "box" }
item { id: 3 name: "cone" }
"""

# name -> (kind, options, extra models.config text). Versions are 1 unless the name says otherwise.
MODELS: dict[str, tuple[str, dict[str, Any], str]] = {
    # A detector with the contract's batched labels, version label `stable` -> 1.
    "tiny": ("detector", {"size": TINY_SIZE}, 'version_labels { key: "stable" value: 1 }'),
    "cls": ("classifier", {"size": 8}, ""),
    # A TF1 export without a labels signature, input [-1, -1, -1, 3], label_map.pbtxt beside it.
    "odapi": ("tf1", {}, ""),
    # Version 1 served; version 2 (half the scores) waits in staging/fresh/2 for a test to publish it.
    "fresh": ("detector", {"size": TINY_SIZE}, "model_version_policy { all {} }"),
    # The first labels contract (no input, [K] rows), and a labels signature that always fails, with and without a
    # label_map.pbtxt to fall back on (tests/gateway/test_labels.py).
    "legacy": ("detector", {"size": TINY_SIZE, "labels": "legacy"}, ""),
    "broken": ("detector", {"size": TINY_SIZE, "labels": "broken"}, ""),
    "nomap": ("detector", {"size": TINY_SIZE, "labels": "broken"}, ""),
    # A detector whose version carries TFS warmup records (tests/modelserver/test_our_stubs.py).
    "warm": ("detector", {"size": TINY_SIZE, "warmup": WARMUP_RECORDS}, ""),
    # Shadow canaries (tests/gateway/test_shadow.py): versions 1 and 2 the same model, 3 a worse one (SHADOW_WORSE);
    # canaryfail's version 2 fails every Predict and is in shadow through its models.config label.
    "canary": ("detector", {"size": TINY_SIZE}, "model_version_policy { all {} }"),
    "canaryfail": (
        "detector",
        {"size": TINY_SIZE},
        'model_version_policy { all {} } version_labels { key: "shadow" value: 2 }',
    ),
}
SHADOW_WORSE = {"size": TINY_SIZE, "classes": 2, "box_shift": 0.3}
LABEL_MAPS = ("odapi", "broken")


def build_session_models(base: Path) -> Path:
    """Fill ``base`` (``root/``, ``staging/``, ``models.config``) and return it; ``demo`` is linked from
    ``models/demo`` when the project's demo model has been made."""
    from tests.support.tiny_models import build_models

    root, staging = base / "root", base / "staging"
    specs = [(kind, root / name / "1", options) for name, (kind, options, _) in MODELS.items()]
    specs.append(("detector", staging / "fresh" / "2", {"size": TINY_SIZE, "score_scale": 0.5}))
    specs.append(("detector", root / "canary" / "2", {"size": TINY_SIZE}))
    specs.append(("detector", root / "canary" / "3", SHADOW_WORSE))
    specs.append(("detector", root / "canaryfail" / "2", {"size": TINY_SIZE, "fail": True}))
    build_models(specs)
    for name in LABEL_MAPS:
        (root / name / "label_map.pbtxt").write_text(LABEL_MAP)
    entries = {name: extra for name, (_, _, extra) in MODELS.items()}
    if (DEMO / "1" / "saved_model.pb").exists():
        (root / "demo").symlink_to(DEMO, target_is_directory=True)
        entries["demo"] = ""
    config = "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" {extra} }}\n'
        for name, extra in entries.items()
    )
    (base / "models.config").write_text("model_config_list {\n" + config + "}\n")
    return base


def served_models(base: Path) -> list[str]:
    """The names the session's server serves (every model folder in ``root/``)."""
    return sorted(p.name for p in (base / "root").iterdir() if p.is_dir())
