"""The RQ worker: queues, job functions that call ``services.training``, progress, clean-up and metrics.

The worker's own process never imports TensorFlow; RQ forks a work-horse per job, and job functions import what they
need inside themselves.
"""
