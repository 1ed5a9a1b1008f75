"""Fixtures for the TensorFlow test process (``pytest tests/tf``): tests whose own process imports TensorFlow."""

from __future__ import annotations

import os

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
