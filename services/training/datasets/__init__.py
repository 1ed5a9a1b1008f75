"""Datasets: import labelled images (Pascal VOC, CSV, folder per class, TF OD API TFRecords), validate them, split them
and store them as versioned TFRecord datasets under ``data/datasets/<name>/<version>/``.

This package imports nothing on purpose: the gateway reads manifests through :mod:`.storage` without TensorFlow, and
only :mod:`.tfrecord` (used by the import job and the CLI) needs TensorFlow.
"""
