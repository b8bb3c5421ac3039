"""The CLIP tokenizer, built offline from the BPE vocabulary shipped in ``nodes/data/tokenizer``.

Every Stable Diffusion text encoder (CLIP ViT-L/14, OpenCLIP ViT-H/14 and ViT-bigG/14) uses OpenAI CLIP's
byte-level BPE with 49,408 tokens. The vocabulary and merge list are derived here from OpenAI's
``bpe_simple_vocab_16e6.txt.gz`` exactly as ``clip/simple_tokenizer.py`` does, and handed to transformers'
``CLIPTokenizer`` as in-memory objects: in transformers 5 the ``vocab_file=``/``merges_file=`` keywords are
silently ignored and give wrong ids.

The two pad styles: SD1.x/SD2.x and SDXL's first tokenizer pad with ``<|endoftext|>`` (id 49407); SDXL's second
tokenizer (OpenCLIP bigG) pads with ``!`` (id 0).
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BPE_PATH = Path(__file__).resolve().parent.parent / "data" / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"
MODEL_MAX_LENGTH = 77
VOCAB_SIZE = 49408
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
PadWith = Literal["<|endoftext|>", "!"]
PAD_STYLES: tuple[str, ...] = (END_TOKEN, "!")

# CLIP keeps merges 1 .. 48894 of the file (line 0 is a version header): 256 byte tokens, 256 byte+"</w>"
# tokens, 48894 merged tokens and the two specials make 49408.
_MERGE_COUNT = VOCAB_SIZE - 256 * 2 - 2


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for raw bytes, in CLIP's vocabulary order (GPT-2's byte-level mapping).

    Bytes that are already printable map to themselves and come first; the others map to code points 256+
    in increasing byte order and come after them.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    printable_set = set(printable)
    others = [b for b in range(256) if b not in printable_set]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


@functools.cache
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary (token → id) and BPE merge list, read from the shipped ``.gz`` file."""
    if not BPE_PATH.is_file():
        raise FileNotFoundError(f"CLIP tokenizer vocabulary missing: {BPE_PATH} (the package data is incomplete)")
    lines = gzip.decompress(BPE_PATH.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _MERGE_COUNT + 1]]
    if len(merges) != _MERGE_COUNT or any(len(pair) != 2 for pair in merges):
        raise ValueError(f"{BPE_PATH} is not the CLIP BPE vocabulary (expected {_MERGE_COUNT} merge pairs)")
    alphabet = _byte_alphabet()
    tokens = alphabet + [ch + "</w>" for ch in alphabet] + ["".join(pair) for pair in merges] + [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, merges  # type: ignore[return-value]


def clip_tokenizer(pad_with: PadWith = END_TOKEN) -> CLIPTokenizer:
    """A CLIP tokenizer with the real ids; one shared instance per pad style and process.

    The instance is shared: callers that add tokens (textual-inversion embeddings) must work on a
    ``copy.deepcopy`` of it.
    """
    if pad_with not in PAD_STYLES:
        raise ValueError(f"clip_tokenizer: pad_with must be one of {PAD_STYLES}, got {pad_with!r}")
    return _build_tokenizer(pad_with)


@functools.cache
def _build_tokenizer(pad_with: str) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        model_max_length=MODEL_MAX_LENGTH,
        pad_token=pad_with,
        bos_token=START_TOKEN,
        eos_token=END_TOKEN,
        unk_token=END_TOKEN,
    )
