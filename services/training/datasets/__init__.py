"""Datasets as training writes them: the import job (``importer.py``), TFRecord shards in the TF Object Detection
API's keys (``tfrecord.py``, ``features.py``, ``writer.py``) and derived datasets (``derive.py``); ``spotter dataset``
(``cli.py``). The store they write into, the source formats and the checks are TensorFlow-free, in
``services.store.datasets``.
"""
