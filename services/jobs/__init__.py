"""Jobs as every process sees them, TensorFlow-free: the parameters of each job type (:mod:`.params`), the job
types by name (:mod:`.types`), RQ's queues (:mod:`.queues`), chains and cancelling (:mod:`.chains`), records
(:mod:`.records`, with no server path in them: :mod:`.public`) and the jobs API's answers (:mod:`.schemas`).
The gateway, the client and the worker import this; only the worker runs a job's code."""
