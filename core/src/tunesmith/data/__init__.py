"""Datasets, chat messages, prompt templates, packing and collation."""

from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX, Message, ModelTokenizer, Role

__all__ = ["CROSS_ENTROPY_IGNORE_IDX", "Message", "ModelTokenizer", "Role"]
