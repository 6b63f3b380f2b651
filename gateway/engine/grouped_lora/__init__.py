"""The grouped CPU LoRA path: vLLM's CPU punica ops, one matrix product per adapter.

``ops`` holds the ops (pure torch); ``plugin`` is the vLLM general plugin that installs
them in each engine process when the gateway's ``grouped_lora`` setting asks for it.
"""
