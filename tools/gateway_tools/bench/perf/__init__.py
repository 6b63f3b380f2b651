"""``gateway-tools bench perf``: the gateway against the bare engine and vLLM's own server.

One run starts each side in turn (A B C A B C), drives the same workload at each and
reports ratios, so drift on a shared machine affects all sides alike.
"""
