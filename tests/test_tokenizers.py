"""The shipped CLIP tokenizer gives OpenAI CLIP's ids, pads both ways SD needs, and survives save_pretrained."""

from __future__ import annotations

import pytest

from nodes.sd.tokenizers import END_TOKEN, MODEL_MAX_LENGTH, VOCAB_SIZE, clip_tokenizer, clip_vocab_and_merges

START, END = 49406, 49407

# Ids of the real CLIP vocabulary (as in every SD repo's tokenizer/vocab.json).
KNOWN_IDS = [
    ("a photo of a cat", [START, 320, 1125, 539, 320, 2368, END]),
    ("dog", [START, 1929, END]),
    ("astronaut riding a horse", [START, 18376, 6765, 320, 4558, END]),
    ("Hello, World!", [START, 3306, 267, 1002, 256, END]),  # lower-cased; "!" as a word end is "!</w>" = 256
    ("the  an", [START, 518, 550, END]),  # runs of whitespace collapse
    ("", [START, END]),
]


@pytest.mark.parametrize(("text", "ids"), KNOWN_IDS)
def test_known_ids(text: str, ids: list[int]) -> None:
    assert clip_tokenizer()(text).input_ids == ids


def test_vocabulary_layout() -> None:
    vocab, merges = clip_vocab_and_merges()
    assert len(vocab) == VOCAB_SIZE == len(clip_tokenizer())
    assert len(merges) == 48894
    # Byte tokens first, then byte+"</w>", then merges in file order, then the two specials.
    specials = (vocab["!"], vocab["!</w>"], vocab["in"], vocab["<|startoftext|>"], vocab[END_TOKEN])
    assert specials == (0, 256, 512, START, END)
    assert merges[0] == ("i", "n")


@pytest.mark.parametrize(("pad_with", "pad_id"), [("<|endoftext|>", END), ("!", 0)])
def test_padding_styles(pad_with: str, pad_id: int) -> None:
    tokenizer = clip_tokenizer(pad_with)
    assert tokenizer.pad_token_id == pad_id
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=MODEL_MAX_LENGTH).input_ids
    assert ids[:7] == [START, 320, 1125, 539, 320, 2368, END]
    assert ids[7:] == [pad_id] * (MODEL_MAX_LENGTH - 7)


def test_truncation_keeps_end_token() -> None:
    ids = clip_tokenizer()(" ".join(["cat"] * 100), padding="max_length", truncation=True, max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == START and ids[-1] == END and ids[1:-1] == [2368] * 75


def test_instances_are_cached_per_pad_style() -> None:
    assert clip_tokenizer() is clip_tokenizer("<|endoftext|>")
    assert clip_tokenizer("!") is not clip_tokenizer()


def test_unknown_pad_style_is_rejected() -> None:
    with pytest.raises(ValueError, match="pad_with"):
        clip_tokenizer("<pad>")  # type: ignore[arg-type]


@pytest.mark.parametrize("pad_with", ["<|endoftext|>", "!"])
def test_save_pretrained_round_trip(tmp_path, pad_with: str) -> None:
    from transformers import CLIPTokenizer

    original = clip_tokenizer(pad_with)
    original.save_pretrained(tmp_path / "pipeline" / "tokenizer")
    reloaded = CLIPTokenizer.from_pretrained(tmp_path / "pipeline", subfolder="tokenizer", local_files_only=True)
    assert reloaded.get_vocab() == original.get_vocab()
    assert (reloaded.pad_token, reloaded.model_max_length) == (pad_with, MODEL_MAX_LENGTH)
    for text, _ in KNOWN_IDS:
        kwargs = {"padding": "max_length", "max_length": 77, "truncation": True}
        assert reloaded(text, **kwargs).input_ids == original(text, **kwargs).input_ids
