"""The helpers every tokenizer shares: chunks -> (tokens, mask), truncation, offsets."""

from __future__ import annotations

from tunesmith.tokenizers import common_prefix_len, join_chunks, mask_from_offsets, truncate
from tunesmith.tokenizers._utils import end_tail


def test_join_chunks_concatenates_and_repeats_each_chunks_flag():
    tokens, mask = join_chunks([([1], True), ([5, 6, 7], False), ([], True), ([9, 2], True)])
    assert tokens == [1, 5, 6, 7, 9, 2]
    assert mask == [True, False, False, False, True, True]


def test_truncate_leaves_short_sequences_alone_and_copies():
    tokens, mask = [1, 2, 3], [True, False, False]
    out_tokens, out_mask = truncate(tokens, mask, 3, end_ids={3})
    assert (out_tokens, out_mask) == (tokens, mask)
    out_tokens.append(9)
    assert tokens == [1, 2, 3]
    assert truncate(tokens, mask, None) == (tokens, mask)


def test_truncate_keeps_the_final_end_token_untrained():
    tokens = [1, 10, 11, 12, 13, 2]
    mask = [True, True, True, False, False, False]
    assert truncate(tokens, mask, 4, end_ids={2}) == ([1, 10, 11, 2], [True, True, True, True])
    labels = [-100, -100, -100, 12, 13, 2]  # labels: the caller names the ignore value
    cut = truncate(tokens, labels, 5, end_ids={2}, masked=-100)
    assert cut == ([1, 10, 11, 12, 2], [-100, -100, -100, 12, -100])


def test_truncate_without_final_end_token_just_cuts():
    tokens = [1, 10, 11, 12, 13]
    mask = [True, True, False, False, False]
    assert truncate(tokens, mask, 3, end_ids={2}) == ([1, 10, 11], [True, True, False])
    assert truncate(tokens, mask, 0, end_ids={2}) == ([], [])


def test_common_prefix_len_on_strings_and_lists():
    assert common_prefix_len("abcd", "abxy") == 2
    assert common_prefix_len([1, 2, 3], [1, 2, 3, 4]) == 3
    assert common_prefix_len("", "abc") == 0


def test_mask_from_offsets_keeps_any_token_touching_unmasked_text():
    #            p  p  p  a  a  a
    char_mask = [True, True, True, False, False, False]
    offsets = [(0, 2), (2, 4), (4, 6), (6, 6), (0, 0)]
    assert mask_from_offsets(offsets, char_mask) == [True, False, False, False, True]


def test_truncate_keeps_an_end_token_and_the_newline_a_template_writes_after_it():
    # ChatML ends a turn with <|im_end|> "\n" (Gemma: <end_of_turn> "\n"): both stay.
    tokens = [1, 10, 11, 12, 13, 2, 7]
    mask = [True, True, False, False, False, False, False]
    assert truncate(tokens, mask, 4, end_ids={2}) == ([1, 10, 2, 7], [True, True, True, True])
    assert end_tail(tokens, {2}) == 2
    # three tokens after the last end token are content, not a template's suffix
    assert end_tail([2, 10, 11, 12], {2}) == 0
    assert truncate([2, 10, 11, 12], [False] * 4, 2, end_ids={2}) == ([2, 10], [False, False])
    # a tail as long as the limit is not kept whole
    assert truncate(tokens, mask, 2, end_ids={2}) == ([1, 10], [True, True])
