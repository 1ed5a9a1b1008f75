"""What Spotter keeps on disk and every process reads (TensorFlow-free): the dataset store with its formats and
checks (:mod:`.datasets`), training runs (:mod:`.runs`), the active-learning pool (:mod:`.pool`), and the checks a
job's parameters get against all of them at submit time (:mod:`.checks`). The gateway, the worker and training
share them; only training writes TFRecords (``services.training.datasets``)."""
