"""Model folders: listing (sub-folders, diffusers folders), ComfyUI/A1111 layouts, names that cannot escape."""

from __future__ import annotations

import os

import pytest

from graphcore import folders as folder_config
from graphcore.folders import PathEscape, a1111_roots, comfy_extra_model_paths, folders_from_options, safe_join

pytestmark = pytest.mark.usefixtures("without_builtin_models")  # exact listings of the test's own folders


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_listing_includes_subfolders_and_diffusers_folders(isolated_folders):
    ckpts = isolated_folders.models_dir / "checkpoints"
    touch(ckpts / "a.safetensors")
    touch(ckpts / "sdxl" / "b.ckpt")
    touch(ckpts / "notes.txt")
    touch(ckpts / "pipeline" / "model_index.json")
    touch(ckpts / "pipeline" / "unet" / "inner.safetensors")  # inside a diffusers folder: not listed alone
    touch(ckpts / ".hidden" / "c.safetensors")
    assert isolated_folders.list_models("checkpoints") == ["a.safetensors", "pipeline", "sdxl/b.ckpt"]
    assert isolated_folders.resolve_model("checkpoints", "sdxl/b.ckpt") == ckpts / "sdxl" / "b.ckpt"
    assert isolated_folders.resolve_model("checkpoints", "pipeline").is_dir()
    with pytest.raises(FileNotFoundError, match="no checkpoints model named 'missing.safetensors'"):
        isolated_folders.resolve_model("checkpoints", "missing.safetensors")
    with pytest.raises(FileNotFoundError):
        isolated_folders.resolve_model("checkpoints", "notes.txt")  # wrong kind of file


@pytest.mark.parametrize("name", ["../escape.safetensors", "/etc/passwd", "a/../../b.safetensors", "a\x00b",
                                  "..\\escape.safetensors", "C:/x.safetensors"])
def test_model_names_cannot_leave_their_folders(isolated_folders, name):
    touch(isolated_folders.models_dir / "escape.safetensors")
    with pytest.raises((PathEscape, FileNotFoundError)):
        isolated_folders.resolve_model("checkpoints", name)


def test_safe_join_refuses_symlinks_out_unless_allowed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch(outside / "secret.png")
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(PathEscape):
        safe_join(root, "link/secret.png")
    assert safe_join(root, "link/secret.png", allow_symlinks_out=True).is_file()
    assert safe_join(root, "./a//b.png") == root / "a" / "b.png"


def test_comfyui_extra_model_paths_yaml(tmp_path):
    comfy = tmp_path / "ComfyUI"
    touch(comfy / "models" / "checkpoints" / "x.safetensors")
    touch(comfy / "models" / "loras" / "style.safetensors")
    touch(comfy / "other_loras" / "more.safetensors")
    (tmp_path / "extra_model_paths.yaml").write_text(
        "comfyui:\n"
        f"    base_path: {comfy}\n"
        "    checkpoints: models/checkpoints/\n"
        "    loras: |\n"
        "        models/loras\n"
        "        other_loras\n"
        "    configs: models/configs/\n"  # a folder diffgraph has no use for: ignored
    )
    roots = comfy_extra_model_paths(tmp_path / "extra_model_paths.yaml")
    assert roots["checkpoints"] == [comfy / "models" / "checkpoints"]
    assert roots["loras"] == [comfy / "models" / "loras", comfy / "other_loras"]
    assert "configs" not in roots
    found = folders_from_options(models_dir=str(tmp_path / "mine"),
                                 extra_model_paths=[str(tmp_path / "extra_model_paths.yaml")]).create()
    assert found.list_models("loras") == ["more.safetensors", "style.safetensors"]
    assert found.resolve_model("checkpoints", "x.safetensors") == comfy / "models" / "checkpoints" / "x.safetensors"


def test_a1111_install(tmp_path):
    webui = tmp_path / "stable-diffusion-webui"
    touch(webui / "models" / "Stable-diffusion" / "v1-5.safetensors")
    touch(webui / "models" / "Lora" / "detail.safetensors")
    touch(webui / "models" / "ControlNet" / "canny.pth")
    touch(webui / "models" / "VAE" / "vae-ft-mse.safetensors")
    assert a1111_roots(webui)["checkpoints"] == [webui / "models" / "Stable-diffusion"]
    found = folders_from_options(models_dir=str(tmp_path / "mine"), extra_model_paths=[str(webui)]).create()
    assert found.list_models("checkpoints") == ["v1-5.safetensors"]
    assert found.list_models("loras") == ["detail.safetensors"]
    assert found.list_models("controlnet") == ["canny.pth"]
    assert found.list_models("vae") == ["vae-ft-mse.safetensors"]


def test_options_fall_back_to_environment_then_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_MODELS_DIR", str(tmp_path / "env_models"))
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    found = folders_from_options()
    assert found.models_dir == tmp_path / "env_models"
    assert found.output_dir == tmp_path / "data" / "output"
    assert folders_from_options(models_dir=str(tmp_path / "cli")).models_dir == tmp_path / "cli"
    with pytest.raises(FileNotFoundError, match="neither a yaml file nor an A1111 folder"):
        folders_from_options(extra_model_paths=[str(tmp_path / "nowhere")])


def test_builtin_roots_are_listed_next_to_the_users_files(isolated_folders, tmp_path):
    shipped = tmp_path / "shipped"
    touch(shipped / "builtin.safetensors")
    touch(isolated_folders.models_dir / "embeddings" / "mine.pt")
    folder_config.register_builtin_root("embeddings", shipped)
    try:
        assert isolated_folders.list_models("embeddings") == ["builtin.safetensors", "mine.pt"]
    finally:
        folder_config._builtin_roots["embeddings"].remove(shipped)
