"""Adapter evaluation through the serving stack (engine + services).

A top layer, beside the server: it runs serving code, so it lives outside
``gateway.training``, which never imports it. ``run`` classifies and fits, ``metrics``
scores one split, ``report`` and ``charts`` write what people read.
"""

from gateway.evaluation.run import evaluate_adapter

__all__ = ["evaluate_adapter"]
