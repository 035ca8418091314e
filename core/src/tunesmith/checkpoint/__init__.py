"""Reading and writing HF safetensors and Meta checkpoints; the output layout."""

from tunesmith.checkpoint._keys import remap_keys

__all__ = ["remap_keys"]
