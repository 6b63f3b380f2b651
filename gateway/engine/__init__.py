"""Engine layer: the only place that imports vLLM (lazily, inside vllm_engine)."""
