"""Datasets, model builders, training, evaluation, export and active learning.

Modules that need TensorFlow import it themselves; this package's ``__init__`` imports nothing, so TensorFlow-free
modules such as :mod:`services.training.synthetic` stay importable where TensorFlow must not be loaded.
"""
