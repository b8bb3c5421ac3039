"""CLIPEncode: weighted prompts → token chunks of 77 → text encoder hidden states (ComfyUI semantics).

Tokens are grouped by word; a word never straddles two chunks unless it has 8 tokens or more (ComfyUI's rule). Each
chunk is BOS + ≤75 tokens + EOS + padding. A weight w on a token moves its embedding away from the empty
prompt's embedding at the same position: e' = e_empty + w·(e − e_empty). Pooled output: the first chunk's.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import torch

from nodes.sd.model_manager import manager
from nodes.sd.prompt_weights import Segment, parse
from nodes.values import ClipHandle, CondEntry, TextEncoderSlot

CHUNK = 75
# Words of this many tokens or more (e.g. "a,b,c" written without spaces) are split across chunks where they fall;
# shorter ones move whole to the next chunk (ComfyUI's SDTokenizer max_word_length).
MAX_WORD_TOKENS = 8
BOS, EOS = 49406, 49407


@dataclass
class TokenChunks:
    ids: list[list[int]]  # each of length 77
    weights: list[list[float]]

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for chunk in self.weights for w in chunk)


def _pad_id(slot: TextEncoderSlot) -> int:
    return 0 if slot.spec.pad_with == "!" else EOS


def tokenize(text: str, tokenizer, pad_id: int) -> TokenChunks:
    chunks: list[list[tuple[int, float]]] = [[]]

    def new_chunk() -> None:
        chunks.append([])

    segments: list[Segment] = parse(text)
    for segment in segments:
        if segment.breaks_before and chunks[-1]:
            new_chunk()
        for word in segment.text.replace("\n", " ").split(" "):
            if not word:
                continue
            ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            group = [(i, segment.weight) for i in ids]
            long_word = len(group) >= MAX_WORD_TOKENS
            while group:
                room = CHUNK - len(chunks[-1])
                if len(group) <= room:
                    chunks[-1].extend(group)
                    group = []
                elif long_word:  # split where it falls
                    chunks[-1].extend(group[:room])
                    group = group[room:]
                    new_chunk()
                else:  # move the whole word to the next chunk
                    new_chunk()
    if len(chunks) > 1 and not chunks[-1]:
        chunks.pop()
    ids, weights = [], []
    for chunk in chunks:
        padding = CHUNK - len(chunk)
        ids.append([BOS] + [t for t, _ in chunk] + [EOS] + [pad_id] * padding)
        weights.append([1.0] + [w for _, w in chunk] + [1.0] + [1.0] * padding)
    return TokenChunks(ids, weights)


def _layer_index(slot: TextEncoderSlot, stop_at_layer: int | None, blocks: int) -> int:
    """The hidden-state index to read. Clip skip counts from the end of the whole text tower; a module that lacks
    the tower's last block (diffusers' SD2 text encoder: default −1 where the file's is −2) reads one closer."""
    if stop_at_layer is None:
        return slot.default_layer
    index = stop_at_layer + (slot.default_layer - slot.spec.default_layer)
    if index >= 0:
        raise ValueError(f"clip skip {stop_at_layer}: this text encoder (a diffusers folder) lacks its last block; "
                         "use the single-file checkpoint for that layer")
    if -index > blocks:
        raise ValueError(f"clip skip {stop_at_layer}: the text encoder has only {blocks} layers")
    return index


def _hidden(slot: TextEncoderSlot, module: torch.nn.Module, ids: torch.Tensor, layer: int | None):
    """(token hidden states, projected pooled or None) for a batch of 77-token chunks."""
    out = module(input_ids=ids, output_hidden_states=True)
    text_model = getattr(module, "text_model", module)
    hidden = out.hidden_states[_layer_index(slot, layer, len(out.hidden_states) - 1)]
    if slot.spec.final_norm:
        hidden = text_model.final_layer_norm(hidden)
    pooled = getattr(out, "text_embeds", None)
    return hidden, pooled


def _encode_slot(slot: TextEncoderSlot, module: torch.nn.Module, chunks: TokenChunks, layer: int | None):
    device = next(module.parameters()).device
    ids = torch.tensor(chunks.ids, dtype=torch.long, device=device)
    if chunks.weighted:
        empty = torch.tensor([[BOS, EOS] + [_pad_id(slot)] * CHUNK], dtype=torch.long, device=device)
        ids = torch.cat([ids, empty])
    hidden, pooled = _hidden(slot, module, ids, layer)
    if chunks.weighted:
        z_empty = hidden[-1:]
        hidden = hidden[:-1]
        weights = torch.tensor(chunks.weights, dtype=hidden.dtype, device=device).unsqueeze(-1)
        hidden = z_empty + weights * (hidden - z_empty)
    tokens = hidden.reshape(1, -1, hidden.shape[-1])
    first_pooled = pooled[:1] if pooled is not None else None
    return tokens, first_pooled


def _equalise(chunk_sets: list[TokenChunks], slots: tuple[TextEncoderSlot, ...]) -> list[TokenChunks]:
    """Encoders with different texts (SDXL text_g/text_l) get the same number of chunks (empty ones)."""
    most = max(len(c.ids) for c in chunk_sets)
    out = []
    for chunks, slot in zip(chunk_sets, slots, strict=True):
        extra = most - len(chunks.ids)
        empty_ids = [BOS, EOS] + [_pad_id(slot)] * CHUNK
        out.append(TokenChunks(chunks.ids + [empty_ids] * extra, chunks.weights + [[1.0] * 77] * extra))
    return out


def encode(clip: ClipHandle, texts: str | tuple[str, ...]) -> CondEntry:
    """One conditioning entry; `texts` gives one text per encoder (SDXL: text_l, text_g) or one for all."""
    slots = clip.encoders
    if isinstance(texts, str):
        texts = (texts,) * len(slots)
    chunk_sets = _equalise([tokenize(t, s.tokenizer, _pad_id(s)) for t, s in zip(texts, slots, strict=True)], slots)
    with ExitStack() as stack:
        modules = stack.enter_context(manager().use(*(s.module for s in slots)))
        for patch in clip.patches:
            for slot_index, module in enumerate(modules):
                stack.enter_context(patch.applied(module, {"role": "text_encoder", "index": slot_index}))
        with torch.no_grad():
            parts = [_encode_slot(s, m, c, clip.stop_at_layer) for s, m, c in zip(slots, modules, chunk_sets,
                                                                                   strict=True)]
    embeds = torch.cat([tokens for tokens, _ in parts], dim=-1).float().cpu()
    pooled = next((p for _, p in reversed(parts) if p is not None), None)
    return CondEntry(embeds=embeds, pooled=pooled.float().cpu() if pooled is not None else None)
