"""What training and serving share, so neither imports the other.

A leaf package: it imports only the standard library, third-party packages,
``gateway.errors`` and the top-level ``schemas`` package (``tests/unit/test_layers.py``
enforces it).
"""
