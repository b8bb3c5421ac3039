"""CLIPEncode / CLIPSetLastLayer on the tiny checkpoints against hand computations with the diffusers text encoders
and against diffusers' own `encode_prompt`.

Reference conventions: a chunk is BOS + ≤ 75 tokens + EOS + padding (77 ids); a weight w gives
e' = e_empty + w·(e − e_empty) with e_empty the empty prompt's hidden state at the same position (ComfyUI); clip skip
k in diffusers (`clip_skip=k`) is CLIPSetLastLayer(−(k + 1)) for SD1/SD2 and −(k + 2) for SDXL (whose default is
already the penultimate layer).
"""

from __future__ import annotations

import pytest
import torch
from support import parity_helpers as ph

from graphcore import types

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory):
    """A models folder with the tiny SD1, SD2-v (single file and folder), SDXL and refiner checkpoints."""
    root = tmp_path_factory.mktemp("text_models")
    folder = root / "checkpoints"
    built = {family: tiny_checkpoint(family, ("safetensors", "diffusers")) for family in
             ("sd1", "sd2_v", "sdxl", "sdxl_refiner")}
    names = {family: ph.link_formats(ck, folder, ["safetensors", "diffusers"], f"t_{family}")
             for family, ck in built.items()}
    return root, built, names


@pytest.fixture
def encode(models, isolated_folders):
    """encode(family, text, stop_at=None, fmt="safetensors") → the CondEntry CLIPEncode produced (via the executor)."""
    root, _, names = models
    target = isolated_folders.models_dir / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    for entry in (root / "checkpoints").iterdir():
        (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    ex = ph.executor()

    def run(family: str, text: str, stop_at: int | None = None, fmt: str = "safetensors"):
        wf = {"1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": names[family][fmt]}}}
        clip = ["1", 1]
        if stop_at is not None:
            wf["2"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": clip, "stop_at_clip_layer": stop_at}}
            clip = ["2", 0]
        wf["3"] = {"class_type": "CLIPEncode", "inputs": {"text": text, "clip": clip}}
        ph.capture(wf, "4", ["3", 0], types.CONDITIONING, "cond")
        result = ex.run(wf)
        if not result.ok:
            raise RuntimeError(result.error.exception_message)
        (entry,) = ph.captured("cond")
        return entry

    return run


def chunk(ids: list[int], pad: int = EOS) -> list[int]:
    return [BOS, *ids, EOS] + [pad] * (75 - len(ids))


def last_hidden(text_encoder, chunks: list[list[int]]) -> torch.Tensor:
    """SD1: the final-norm output of the last layer for each chunk, concatenated along the tokens."""
    with torch.no_grad():
        out = text_encoder(torch.tensor(chunks)).last_hidden_state
    return out.reshape(1, -1, out.shape[-1])


def diffusers_clip_skip(checkpoint, text: str, skip: int) -> torch.Tensor:
    """StableDiffusionPipeline.encode_prompt(clip_skip=skip), step by step: hidden_states[-(skip + 1)] through the
    final layer norm. (diffusers 0.42 reaches the norm as `text_encoder.text_model`, which transformers 5's
    CLIPTextModel no longer has, so the pipeline call itself raises AttributeError.)"""
    text_encoder = checkpoint.components["text_encoder"]
    ids = checkpoint.components["tokenizer"](text, padding="max_length", max_length=77, truncation=True,
                                             return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = text_encoder(ids, output_hidden_states=True).hidden_states[-(skip + 1)]
        return getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)


def token_ids(checkpoint, text: str) -> list[int]:
    return checkpoint.components["tokenizer"](text, add_special_tokens=False)["input_ids"]


def test_plain_prompt_equals_diffusers_encode_prompt(models, encode):
    sd1 = models[1]["sd1"]
    ours = encode("sd1", "a red circle on a blue square").embeds
    positive, _ = sd1.pipeline().encode_prompt("a red circle on a blue square", "cpu", 1, False)
    assert ours.shape == (1, 77, 32)
    assert ph.max_abs_diff(ours, positive) < 1e-6


@pytest.mark.parametrize(("prompt", "plain", "weighted_words"), [
    ("a (red:1.5) circle", "a red circle", {"red": 1.5}),
    ("a ((red)) circle", "a red circle", {"red": 1.1 * 1.1}),
    ("a [red] circle", "a red circle", {"red": 1 / 1.1}),
    ("(a red:0.5) (circle:1.3)", "a red circle", {"a": 0.5, "red": 0.5, "circle": 1.3}),
    ("a (red [circle]:1.2)", "a red circle", {"red": 1.2, "circle": 1.2 / 1.1}),
])  # fmt: skip
def test_weights_move_tokens_from_the_empty_prompt(models, encode, prompt, plain, weighted_words):
    sd1 = models[1]["sd1"]
    text_encoder = sd1.components["text_encoder"]
    ids = token_ids(sd1, plain)
    words = plain.split()
    weights = torch.ones(77)
    for position, word in enumerate(words, start=1):  # every word here is one token; position 0 is BOS
        weights[position] = weighted_words.get(word, 1.0)
    e = last_hidden(text_encoder, [chunk(ids)])
    e_empty = last_hidden(text_encoder, [chunk([])])
    expected = e_empty + weights[None, :, None] * (e - e_empty)
    ours = encode("sd1", prompt).embeds
    assert ph.max_abs_diff(ours, expected) < 1e-5
    assert ph.max_abs_diff(ours, e) > 1e-3  # the weights changed something


def test_escaped_brackets_are_text(models, encode):
    sd1 = models[1]["sd1"]
    ours = encode("sd1", r"a \(red\) circle \[x\]").embeds
    expected = last_hidden(sd1.components["text_encoder"], [chunk(token_ids(sd1, "a (red) circle [x]"))])
    assert ph.max_abs_diff(ours, expected) < 1e-6


def test_long_prompts_are_chunked_at_word_boundaries(models, encode):
    sd1 = models[1]["sd1"]
    te = sd1.components["text_encoder"]
    bio = token_ids(sd1, "bioluminescent")  # 5 tokens: does not fit after 74 single tokens, moves whole
    assert len(bio) == 5
    prompt = "a " * 74 + "bioluminescent end"
    ours = encode("sd1", prompt).embeds
    expected = last_hidden(te, [chunk([320] * 74), chunk([*bio, 806])])
    assert ours.shape == (1, 154, 32)
    assert ph.max_abs_diff(ours, expected) < 1e-6


def test_words_of_eight_tokens_or_more_are_split_where_they_fall(models, encode):
    """ComfyUI's rule: a word of ≥ 8 tokens (here 13, written without spaces) fills the chunk and continues."""
    sd1 = models[1]["sd1"]
    long_word = token_ids(sd1, "a,b,c,d,e,f,g")
    assert len(long_word) == 13
    prompt = "a " * 70 + "a,b,c,d,e,f,g"
    ours = encode("sd1", prompt).embeds
    expected = last_hidden(sd1.components["text_encoder"], [chunk([320] * 70 + long_word[:5]), chunk(long_word[5:])])
    assert ph.max_abs_diff(ours, expected) < 1e-6


def test_break_starts_a_new_chunk(models, encode):
    sd1 = models[1]["sd1"]
    ours = encode("sd1", "a cat BREAK a dog").embeds
    expected = last_hidden(sd1.components["text_encoder"], [chunk([320, 2368]), chunk([320, 1929])])
    assert ph.max_abs_diff(ours, expected) < 1e-6
    # "BREAK" inside a word or in lower case is text
    assert encode("sd1", "a cat break a dog").embeds.shape == (1, 77, 32)


def test_empty_prompt(models, encode):
    sd1 = models[1]["sd1"]
    ours = encode("sd1", "").embeds
    assert ph.max_abs_diff(ours, last_hidden(sd1.components["text_encoder"], [chunk([])])) < 1e-6
    _, negative = sd1.pipeline().encode_prompt("x", "cpu", 1, True, "")
    assert ph.max_abs_diff(ours, negative) < 1e-6


def test_clip_skip_matches_diffusers(models, encode):
    sd1 = models[1]["sd1"]
    pipe = sd1.pipeline()
    for skip in (1, 2):
        reference = diffusers_clip_skip(sd1, "a red circle", skip)
        assert ph.max_abs_diff(encode("sd1", "a red circle", stop_at=-(skip + 1)).embeds, reference) < 1e-6
    default, _ = pipe.encode_prompt("a red circle", "cpu", 1, False)
    assert ph.max_abs_diff(encode("sd1", "a red circle", stop_at=-1).embeds, default) < 1e-6
    assert ph.max_abs_diff(encode("sd1", "a red circle", stop_at=-2).embeds, default) > 1e-3
    with pytest.raises(RuntimeError, match="only 3 layers"):
        encode("sd1", "a red circle", stop_at=-5)


def test_sd2_clip_skip_is_the_same_for_single_files_and_folders(models, encode):
    """SD2 files hold OpenCLIP-H's 24 blocks and read the penultimate; diffusers folders hold 23 and read the last."""
    sd2 = models[1]["sd2_v"]
    pipe = sd2.pipeline()
    default, _ = pipe.encode_prompt("a red circle", "cpu", 1, False)
    skipped = diffusers_clip_skip(sd2, "a red circle", 1)
    for fmt in ("safetensors", "diffusers"):
        assert ph.max_abs_diff(encode("sd2_v", "a red circle", fmt=fmt).embeds, default) < 1e-6
        assert ph.max_abs_diff(encode("sd2_v", "a red circle", stop_at=-2, fmt=fmt).embeds, default) < 1e-6
        assert ph.max_abs_diff(encode("sd2_v", "a red circle", stop_at=-3, fmt=fmt).embeds, skipped) < 1e-6
    last = encode("sd2_v", "a red circle", stop_at=-1).embeds  # the 24th block: only in the single file
    assert ph.max_abs_diff(last, default) > 1e-3
    with pytest.raises(RuntimeError, match="lacks its last block"):
        encode("sd2_v", "a red circle", stop_at=-1, fmt="diffusers")


@pytest.mark.parametrize("fmt", ["safetensors", "diffusers"])
def test_sdxl_concatenates_both_encoders_and_pools_big_g(models, encode, fmt):
    sdxl = models[1]["sdxl"]
    pipe = sdxl.pipeline()
    prompt_embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
        "a red circle", negative_prompt="a blue square", do_classifier_free_guidance=True)
    positive = encode("sdxl", "a red circle", fmt=fmt)
    negative = encode("sdxl", "a blue square", fmt=fmt)
    assert positive.embeds.shape == (1, 77, 32 + 64) and positive.pooled.shape == (1, 48)
    assert ph.max_abs_diff(positive.embeds, prompt_embeds) < 1e-6
    assert ph.max_abs_diff(negative.embeds, negative_embeds) < 1e-6
    assert ph.max_abs_diff(positive.pooled, pooled) < 1e-6
    assert ph.max_abs_diff(negative.pooled, negative_pooled) < 1e-6
    skipped, _, skipped_pooled, _ = pipe.encode_prompt("a red circle", do_classifier_free_guidance=False, clip_skip=1)
    ours_skipped = encode("sdxl", "a red circle", stop_at=-3, fmt=fmt)
    assert ph.max_abs_diff(ours_skipped.embeds, skipped) < 1e-6
    assert ph.max_abs_diff(ours_skipped.pooled, skipped_pooled) < 1e-6  # the pooled output ignores clip skip


def test_sdxl_long_prompt_pools_the_first_chunk(models, encode):
    """diffusers truncates at 77 tokens: with one-token words that is exactly our first chunk and its pooled output."""
    sdxl = models[1]["sdxl"]
    prompt = " ".join(["a", "red", "circle"] * 30)  # 90 tokens → 2 chunks
    ours = encode("sdxl", prompt)
    truncated, _, pooled, _ = sdxl.pipeline().encode_prompt(prompt, do_classifier_free_guidance=False)
    assert ours.embeds.shape == (1, 154, 96)
    assert ph.max_abs_diff(ours.embeds[:, :77], truncated) < 1e-6
    assert ph.max_abs_diff(ours.pooled, pooled) < 1e-6


def test_refiner_uses_big_g_only(models, encode):
    refiner = models[1]["sdxl_refiner"]
    prompt_embeds, negative_embeds, pooled, negative_pooled = refiner.pipeline().encode_prompt(
        "a red circle", negative_prompt="a blue square", do_classifier_free_guidance=True)
    positive, negative = encode("sdxl_refiner", "a red circle"), encode("sdxl_refiner", "a blue square")
    assert positive.embeds.shape == (1, 77, 64)
    assert ph.max_abs_diff(positive.embeds, prompt_embeds) < 1e-6
    assert ph.max_abs_diff(negative.embeds, negative_embeds) < 1e-6
    assert ph.max_abs_diff(positive.pooled, pooled) < 1e-6
    assert ph.max_abs_diff(negative.pooled, negative_pooled) < 1e-6
