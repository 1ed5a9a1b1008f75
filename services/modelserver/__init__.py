"""The embedded model server: a stand-in for TensorFlow Serving that speaks its gRPC and REST APIs.

Only ``spotter modelserver`` (and tests in ``tests/tf``) import the modules that need TensorFlow; this package's
``__init__`` imports nothing, so the CLI can register the command without loading TensorFlow.
"""
