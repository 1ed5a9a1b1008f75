"""The dataset store (``data/datasets/<name>/<version>/``): manifests, the accepted source formats (Pascal VOC, CSV,
folder per class), archive and image checks, splits and uploads. TensorFlow-free; the TFRecord writing lives in
``services.training.datasets``."""
