"""Adapter evaluation through the serving stack (engine + services).

A top layer, beside the server: it runs serving code, so it lives outside
``gateway.training``, which never imports it. ``run`` classifies and fits, ``metrics``
scores one split, ``report`` writes what people read. The charts are a tool
(``gateway_tools.evaluation.charts``): they need matplotlib, which the server does not.
"""

from gateway.evaluation.run import evaluate_adapter

__all__ = ["evaluate_adapter"]
