"""The choice-mode prefix trie."""
import pytest

from atlasrl.models.choice import ChoiceError, ChoiceTrie, allowed_per_position, choice_token_ids

END = 99


def test_trie_allowed_sets_and_index():
    trie = ChoiceTrie([[1, 2, END], [1, 3, END], [4, END]])
    assert trie.allowed([]) == [1, 4]
    assert trie.allowed([1]) == [2, 3]
    assert trie.allowed([1, 3]) == [END]
    assert trie.allowed([7]) == []
    assert trie.index([1, 3, END]) == 1 and trie.index([4, END]) == 2
    assert trie.index([1, 3]) is None
    assert trie.max_len == 3


def test_duplicates_keep_the_original_indices():
    trie = ChoiceTrie([[5, END], [5, END], [6, END]])
    assert trie.index([6, END]) == 2 and trie.index([5, END]) == 0


@pytest.mark.parametrize("choices", [[], [[]], [[1, 2], [1, 2, 3]], [[1, 2, 3], [1, 2]]])
def test_invalid_choice_sets(choices):
    with pytest.raises(ChoiceError):
        ChoiceTrie(choices)


def test_allowed_per_position_checks_the_response():
    choices = [[1, 2, END], [1, 3, END]]
    assert allowed_per_position(choices, [1, 3, END]) == [[1], [2, 3], [END]]
    with pytest.raises(ChoiceError, match="not allowed"):
        allowed_per_position(choices, [1, 4, END])
    with pytest.raises(ChoiceError, match="before completing"):
        allowed_per_position(choices, [1, 2])


def test_choice_token_ids_end_with_the_end_token(text_policy):
    tok = text_policy.tokenizer
    end = text_policy.eos_token_ids[0]
    ids = choice_token_ids(tok, ["Up", "Down", "Left, Right"], end)
    assert all(seq[-1] == end for seq in ids)
    assert [len(s) for s in ids[:2]] == [2, 2]
    assert tok.decode(ids[2][:-1]) == "Left, Right"
    ChoiceTrie(ids)   # prefix-free thanks to the end token
