"""Test helpers for tunesmith and its plugins: fixtures and conformance checks."""

from tunesmith.testing._fake_tokenizer import FakeTokenizer

__all__ = ["FakeTokenizer"]
