"""PNG text chunks and the workflows images carry (ComfyUI, diffgraph, A1111 PNG/JPEG)."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from graphcore import metadata
from graphcore.metadata import (
    MetadataError,
    image_text_metadata,
    png_info,
    png_text_chunks,
    read_image_workflow,
    workflow_from_png,
)

COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                               "positive": ["6", 0], "negative": ["7", 0],
                                               "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat — ünïcode", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}
UI_WORKFLOW = {"last_node_id": 9, "last_link_id": 9, "nodes": [{"id": 9, "type": "SaveImage"}], "links": [],
               "version": 0.4}


def png_bytes(info: PngInfo | None = None, size=(4, 3)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 30)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def comfy_png(prompt=COMFY_PROMPT, workflow=UI_WORKFLOW) -> bytes:
    """What ComfyUI's SaveImage writes: tEXt `prompt` and `workflow`, JSON with ASCII escapes."""
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", json.dumps(workflow))
    return png_bytes(info)


def test_reads_text_ztxt_and_itxt_chunks():
    info = PngInfo()
    info.add_text("plain", "latin-1 café")
    info.add_text("packed", "x" * 5000, zip=True)
    info.add_itxt("intl", "日本語のプロンプト", lang="ja", tkey="t")
    info.add_itxt("intl-packed", "ß" * 3000, zip=True)
    info.add_text("auto", "emoji ✨ forces iTXt")
    texts = png_text_chunks(png_bytes(info))
    assert texts == {"plain": "latin-1 café", "packed": "x" * 5000, "intl": "日本語のプロンプト",
                     "intl-packed": "ß" * 3000, "auto": "emoji ✨ forces iTXt"}


def test_sources_path_bytes_and_stream(tmp_path):
    data = comfy_png()
    path = tmp_path / "c.png"
    path.write_bytes(data)
    expected = {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(UI_WORKFLOW)}
    assert png_text_chunks(path) == png_text_chunks(str(path)) == png_text_chunks(data) == expected
    assert png_text_chunks(io.BytesIO(data)) == expected


def test_not_a_png_and_missing_file(tmp_path):
    with pytest.raises(MetadataError, match="not a PNG"):
        png_text_chunks(b"GIF89a....")
    with pytest.raises(MetadataError, match="cannot read"):
        png_text_chunks(tmp_path / "absent.png")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_bad_crc_chunk_is_skipped_and_bombs_refused(monkeypatch):
    base = png_bytes()
    good = _chunk(b"tEXt", b"good\x00yes")
    bad = bytearray(_chunk(b"tEXt", b"bad\x00no"))
    bad[-1] ^= 0xFF
    spliced = base[:33] + good + bytes(bad) + base[33:]  # after the signature and IHDR
    assert png_text_chunks(spliced) == {"good": "yes"}
    monkeypatch.setattr(metadata, "MAX_TEXT_BYTES", 1000)
    bomb = _chunk(b"zTXt", b"bomb\x00\x00" + zlib.compress(b"a" * 100_000))
    with pytest.raises(MetadataError, match="inflates to more than 1000"):
        png_text_chunks(base[:33] + bomb + base[33:])


def test_utf8_in_a_text_chunk_is_read_as_utf8():
    base = png_bytes()
    raw = _chunk(b"tEXt", b"parameters\x00" + "café ✨".encode())
    assert png_text_chunks(base[:33] + raw + base[33:]) == {"parameters": "café ✨"}


def test_writing_keywords_and_unicode(tmp_path):
    with pytest.raises(ValueError, match="keyword"):
        png_info({" lead": "x"})
    with pytest.raises(ValueError, match="keyword"):
        png_info({"k" * 80: "x"})
    data = png_bytes(png_info({"prompt": "{}", "parameters": "猫, Steps: 1"}))
    assert png_text_chunks(data) == {"prompt": "{}", "parameters": "猫, Steps: 1"}
    assert b"iTXt" in data and b"tEXt" in data


# ------------------------------------------------------------------------------------------------ workflows


def test_comfyui_png_gives_its_api_graph():
    found = read_image_workflow(comfy_png())
    assert found.api == COMFY_PROMPT
    assert found.origin == "comfyui" and found.ui == UI_WORKFLOW and found.warnings == []
    assert workflow_from_png(comfy_png()) == COMFY_PROMPT


def test_diffgraph_png_is_recognised(tmp_path):
    info = png_info({"prompt": json.dumps(COMFY_PROMPT), metadata.SOFTWARE_KEY: metadata.SOFTWARE_NAME})
    assert read_image_workflow(png_bytes(info)).origin == "diffgraph"
    saved = {"version": 1, "api": COMFY_PROMPT, "canvas": {"nodes": []}}  # a saved workflow, no prompt chunk
    found = read_image_workflow(png_bytes(png_info({"workflow": json.dumps(saved)})))
    assert found.api == COMFY_PROMPT and found.origin == "diffgraph"


def test_ui_only_png_needs_a_converter():
    data = png_bytes(png_info({"workflow": json.dumps(UI_WORKFLOW)}))
    with pytest.raises(MetadataError, match="UI-format"):
        workflow_from_png(data)
    converted = {"1": {"class_type": "X", "inputs": {}}}
    assert workflow_from_png(data, ui_to_api=lambda ui: converted if ui == UI_WORKFLOW else {}) == converted


def test_a1111_png_becomes_a_txt2img_graph():
    text = ("a red fox in snow\nNegative prompt: blurry\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6, "
            "Seed: 99, Size: 640x448, Model: dreamshaper_8")
    found = read_image_workflow(png_bytes(png_info({"parameters": text})), checkpoints=["dreamshaper_8.safetensors"])
    assert found.origin == "a1111" and found.warnings == []
    sampler = found.api["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (
        99, 30, 6.0, "dpmpp_2m", "karras")
    assert found.api["5"]["inputs"] == {"width": 640, "height": 448, "batch_size": 1}
    assert found.api["6"]["inputs"]["text"] == "a red fox in snow"
    assert found.api["7"]["inputs"]["text"] == "blurry"
    assert found.api["4"]["inputs"]["ckpt_name"] == "dreamshaper_8.safetensors"
    assert found.parameters["model"] == "dreamshaper_8"


def test_a1111_jpeg_with_exif_user_comment():
    text = "a lighthouse, ünïcode\nSteps: 12, Sampler: Euler a, CFG scale: 7, Seed: 4, Size: 64x64"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", exif=exif)
    assert image_text_metadata(buffer.getvalue()) == {"parameters": text}
    graph = workflow_from_png(buffer.getvalue())
    assert graph["3"]["inputs"]["sampler_name"] == "euler_ancestral" and graph["3"]["inputs"]["steps"] == 12


def test_broken_prompt_chunk_falls_back_to_parameters():
    info = png_info({"prompt": "{not json", "parameters": "x\nSteps: 3, Sampler: Euler, Seed: 1, Size: 64x64"})
    found = read_image_workflow(png_bytes(info))
    assert found.origin == "a1111" and found.api["3"]["inputs"]["steps"] == 3
    assert any("'prompt' chunk is not valid JSON" in w for w in found.warnings)


def test_image_without_workflow_names_what_it_found():
    with pytest.raises(MetadataError, match=r"no workflow.*Comment"):
        workflow_from_png(png_bytes(png_info({"Comment": "hello"})))
    with pytest.raises(MetadataError, match="not an image"):
        workflow_from_png(b"definitely not an image")


def test_cli_loads_a_png_workflow(tmp_path):
    from graphcore.cli import load_workflow_file

    path = tmp_path / "from_comfy.png"
    path.write_bytes(comfy_png())
    assert load_workflow_file(str(path)) == COMFY_PROMPT
