"""Re-export a published detector version with the current signatures, keeping its weights bit for bit.

For changes that touch only the exported graph (the ``labels`` signature gained an input so that TFS's batching
accepts it; the variables became the ones TFS's saver restores, keras-team/keras#19274): the weights are read from
the version's own SavedModel, the detector is rebuilt from ``assets.extra/spotter.json``, exported aside, checked to
answer exactly as the old version did (every output of ``serving_default`` and ``detect_encoded`` on the given
images), then swapped in place::

    python -m services.training.reexport models/demo/1 models/demo/examples/*.png models/demo/examples/*.jpg
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from services.training.detector import DetectorConfig, build_detector
from services.training.export import METADATA_FILE, export_detector, export_staging, publish

log = logging.getLogger(__name__)


def _outputs(loaded: Any, canvases: np.ndarray, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
    found = {f"serve/{k}": v.numpy() for k, v in loaded.signatures["serving_default"](images=canvases).items()}
    for i, data in enumerate(encoded):
        out = loaded.signatures["detect_encoded"](encoded=tf.constant([data]))
        found.update({f"encoded{i}/{k}": v.numpy() for k, v in out.items()})
    return found


def reexport_detector(version_dir: Path, images: Sequence[Path] = ()) -> Path:
    """Re-export ``version_dir`` in place (same version number), refusing if any answer changes.

    Raises:
        RuntimeError: the new export answers differently from the old one (nothing is replaced).
    """
    info = json.loads((version_dir / "assets.extra" / METADATA_FILE).read_text())
    config = DetectorConfig.from_dict(info["detector"])
    old = tf.saved_model.load(str(version_dir))
    model = build_detector(config, fixed_size=True, pretrained=False)
    model.set_weights([v.numpy() for v in old.weights])
    extra = {k: v for k, v in info.items() if k not in ("kind", "detector", "score_floor")}
    model_dir = version_dir.parent
    with export_staging(model_dir) as staging:
        export_detector(
            model, config, staging, model_name=model_dir.name, score_floor=info["score_floor"], metadata=extra
        )
        new = tf.saved_model.load(str(staging))
        rng = np.random.default_rng(0)
        size = config.input_size
        canvases = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)
        encoded = [p.read_bytes() for p in images]
        before, after = _outputs(old, canvases, encoded), _outputs(new, canvases, encoded)
        changed = [k for k in before if not np.array_equal(before[k], after[k])]
        if changed:
            raise RuntimeError(f"the re-export answers differently: {changed}")
        log.info("re-export of %s answers identically on %d images and 3 canvases", version_dir, len(encoded))
        publish(staging, model_dir, version=int(version_dir.name), replace=True)
    return version_dir


def main(argv: Sequence[str]) -> None:
    """``python -m services.training.reexport VERSION_DIR [IMAGE ...]``."""
    from services.logs import configure_logging

    configure_logging("INFO", json=False)
    reexport_detector(Path(argv[0]), [Path(a) for a in argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
