"""Training submodule: turns labelled data into LoRA adapters the gateway serves."""
