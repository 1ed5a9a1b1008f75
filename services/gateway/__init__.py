"""The gateway: REST (and later gRPC) transports over one dataplane, a batcher and a TensorFlow Serving client.

Nothing here imports TensorFlow: the model server is reached through the stubs in ``services.gen.tfs``.
"""
