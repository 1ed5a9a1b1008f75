"""Spotter: serve, train and operate image detectors and classifiers behind TensorFlow Serving."""

__version__ = "0.1.0"
