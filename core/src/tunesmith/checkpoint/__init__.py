"""Reading and writing checkpoints: Hugging Face safetensors (sharded, with an index)
and Meta ``consolidated.*.pth``, the ``output_dir/epoch_N`` layout, training state
and atomic writes.

A recipe uses :class:`Checkpointer`; the functions below it are the building blocks,
usable on their own (``tunesmith convert`` is :func:`convert_checkpoint`).
"""

from tunesmith.checkpoint._checkpointer import Checkpointer, detect_format, find_adapter
from tunesmith.checkpoint._convert import convert_checkpoint
from tunesmith.checkpoint._dtypes import (
    config_dtype,
    declare_dtype,
    record_dtype,
    resolve_dtype,
    stored_dtype,
)
from tunesmith.checkpoint._files import (
    atomic_directory,
    atomic_write,
    check_new_output,
    copy_support_files,
)
from tunesmith.checkpoint._hf import (
    find_hf_weight_files,
    full_precision,
    load_hf_state_dict,
    parse_size,
    read_hf_config,
    save_hf_state_dict,
)
from tunesmith.checkpoint._hf_config import HFDecoderConfig, hf_decoder_config, hf_rope_settings
from tunesmith.checkpoint._keys import (
    detect_key_layout,
    hf_to_native_state_dict,
    native_to_hf_state_dict,
    remap_keys,
)
from tunesmith.checkpoint._meta import (
    halves_to_interleaved,
    interleaved_to_halves,
    load_meta_checkpoint,
)
from tunesmith.checkpoint._weights import LoadResult, load_model_weights

__all__ = [
    "Checkpointer",
    "HFDecoderConfig",
    "LoadResult",
    "atomic_directory",
    "atomic_write",
    "check_new_output",
    "config_dtype",
    "convert_checkpoint",
    "copy_support_files",
    "declare_dtype",
    "detect_format",
    "detect_key_layout",
    "find_adapter",
    "find_hf_weight_files",
    "full_precision",
    "hf_decoder_config",
    "hf_rope_settings",
    "halves_to_interleaved",
    "hf_to_native_state_dict",
    "interleaved_to_halves",
    "load_hf_state_dict",
    "load_meta_checkpoint",
    "load_model_weights",
    "native_to_hf_state_dict",
    "parse_size",
    "read_hf_config",
    "record_dtype",
    "remap_keys",
    "resolve_dtype",
    "save_hf_state_dict",
    "stored_dtype",
]
