"""``models/demo/README.md``: how the demo model was made and what it measured, written by the recipe itself so the
page cannot drift from the model beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.files import atomic_write
from services.training.augment import AugmentConfig

_TEMPLATE = """# The demo model

A small detector of four classes of small objects (`circle`, `square`, `triangle`, `cross`, 14–40 px) among
clutter, trained by Spotter's own code (`services/training/`) on scenes that Spotter generates
(`services/training/synthetic.py`). Made by `make demo-model` (`spotter demo-model --output models/demo`); this page
is written by that command.

- **Model**: CenterNet-style anchor-free head (class heat-maps, size and offset at stride {stride}) on a
  {backbone} backbone, alpha {alpha}, trained from scratch (no pretrained weights can be downloaded here).
- **Input**: `images` uint8 `[-1, {size}, {size}, 3]` (letterboxed canvas); up to {max_det} detections per image.
- **Signatures**: `serving_default`, `detect_encoded`, `labels` (input `batch` int32 `[-1]`, send `[0]`; outputs
  `ids` and `names` `[-1, 4]`, one row per element); warmup records in `1/assets.extra/`.
- **Size on disk**: {size_mb:.2f} MB (`1/`).

## How it was made

- Training set: {train_scenes} scenes of seed {train_seed} (320x320), generated once in {generate_seconds:.0f} s.
- Training: {epochs} epochs x {steps} steps, batch {batch}, random {train_size} px crops after box-aware
  augmentation (scale {scale_lo}–{scale_hi} and crop, horizontal flip, brightness and contrast), AdamW with
  warm-up and cosine decay (peak {lr}), seed {seed}.
- Training took **{train_minutes:.1f} min** on the build machine's CPU ({train_ips:.1f} images/s), final loss
  {final_loss:.3f}.
- Scores are calibrated (Platt scaling on {calibration_scenes} scenes of seed {calibration_seed}: score =
  sigmoid({slope:.3f} x peak logit {intercept:+.3f})), so a score is the probability that a detection is right (IoU
  ≥ 0.5, right class); AP does not change.

## How good it is

On {eval_scenes} held-out scenes of seed {eval_seed} (pycocotools, IoU 0.5, up to 100 detections per image):

| class | AP@0.5 |
| --- | --- |
{ap_rows}
| **mean** | **{map50:.3f}** |

At the gateway's default `min_score` 0.5: precision {precision:.3f}, recall {recall:.3f}.

## Examples

`examples/` holds held-out scenes (seed {example_seed}), a wide 480x360 scene (letterboxed by the gateway), and a
{poster_w}x{poster_h} poster whose objects are only found by tiling; `examples/ground_truth.json` gives, per file,
its width, height and objects (label, class id, box in pixels). At `min_score` 0.5 (poster: tiles + whole image,
merged by `services.vision`):

| file | objects | found (IoU ≥ 0.5, right label) | other detections |
| --- | --- | --- | --- |
{example_rows}

## Speed

In-process `serving_default` (`tf.saved_model.load`) on the build machine's CPU: {speed}.
"""


def write_readme(path: Path, *, recipe: dict[str, Any], results: dict[str, Any]) -> None:
    """Write the README from the recipe and the measured results (written aside, renamed into place)."""
    det, train, examples = recipe["detector"], recipe["train"], recipe["examples"]
    text = _TEMPLATE.format(
        stride=det["stride"],
        backbone=det["backbone"],
        alpha=det["alpha"],
        size=det["input_size"],
        max_det=det["max_detections"],
        size_mb=results["size_bytes"] / 1e6,
        train_scenes=recipe["train_scenes"],
        train_seed=recipe["train_seed"],
        generate_seconds=results["generate_seconds"],
        epochs=train["epochs"],
        steps=train["steps_per_epoch"],
        batch=train["batch_size"],
        train_size=train["train_size"],
        scale_lo=AugmentConfig().scale_range[0],
        scale_hi=AugmentConfig().scale_range[1],
        lr=train["learning_rate"],
        seed=train["seed"],
        train_minutes=results["train_seconds"] / 60,
        train_ips=results["train_images_per_second"],
        final_loss=results["final_loss"],
        calibration_scenes=recipe["calibration_scenes"],
        calibration_seed=recipe["calibration_seed"],
        slope=det["score_slope"],
        intercept=det["score_intercept"],
        eval_scenes=recipe["eval_scenes"],
        eval_seed=recipe["eval_seed"],
        ap_rows="\n".join(f"| {name} | {ap:.3f} |" for name, ap in results["ap50_per_class"].items()),
        map50=results["map50"],
        precision=results["precision_at_0.5"],
        recall=results["recall_at_0.5"],
        example_seed=examples["seed"],
        poster_w=examples["poster_size"][0],
        poster_h=examples["poster_size"][1],
        example_rows="\n".join(
            f"| {c['name']} | {c['objects']} | {c['found']} | {c['false_positives']} |" for c in results["examples"]
        ),
        speed=", ".join(f"{ips} images/s at batch {b}" for b, ips in results["inference_images_per_second"].items()),
    )
    atomic_write(path, text)
