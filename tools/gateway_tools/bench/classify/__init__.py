"""``gateway-tools bench classify``: ``/v1/classify`` with one adapter's versions side by side.

One gateway serves every version (each under its own name), and the versions take turns
in rounds, so the after/before ratios (a decision-token version over a JSON-answer one)
compare like with like on a shared machine.
"""
