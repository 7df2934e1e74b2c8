"""Base models found in the usual places, and a cheap check of the one the user names
(issue 13, defect 8): no weights loaded, no network, a bounded set of folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loratui.engine.families.discover import check_model, downloads_first, find_models


@pytest.fixture
def hf_cache(tmp_path: Path, tiny_model: Path, monkeypatch) -> Path:
    """A Hugging Face cache holding one diffusers model (the tiny one's configs, as a snapshot)."""
    cache = tmp_path / "hf"
    repo = cache / "models--someone--tiny-sd"
    snapshot = repo / "snapshots" / "abc123"
    (snapshot / "unet").mkdir(parents=True)
    shutil.copy2(tiny_model / "model_index.json", snapshot / "model_index.json")
    shutil.copy2(tiny_model / "unet" / "config.json", snapshot / "unet" / "config.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (cache / "models--someone--only-a-lora" / "snapshots" / "x").mkdir(parents=True)  # no model_index.json
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_a_hub_id_is_looked_up_in_the_local_cache(hf_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = check_model("someone/tiny-sd")
    assert found.ok and found.message == "SD-1.5 · in the Hugging Face cache"
    missing = check_model("someone/not-here")
    assert not missing.ok  # offline: it cannot train, said at once (it failed after ~54 s)
    assert missing.message == "someone/not-here: not downloaded, and HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    online = check_model("someone/not-here")
    assert online.ok and online.message == "someone/not-here: not downloaded, the run downloads it"


def test_only_a_hub_id_not_in_the_cache_is_downloaded_first(hf_cache: Path, tmp_path: Path, monkeypatch) -> None:
    """A run of such a model spends its setup downloading: the card's setup time leaves it out."""
    assert downloads_first("someone/not-here")
    assert not downloads_first("someone/tiny-sd") and not downloads_first(" someone/tiny-sd ")
    assert not downloads_first("tiny") and not downloads_first(str(tmp_path / "model.safetensors"))
    (tmp_path / "someone" / "not-here").mkdir(parents=True)  # a folder by that name here: a path
    monkeypatch.chdir(tmp_path)
    assert not downloads_first("someone/not-here")


def test_paths_and_files_that_are_not_models_are_named(tmp_path: Path, tiny_model: Path) -> None:
    from safetensors.torch import save_file
    import torch

    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    (tmp_path / "notes.txt").write_text("hi")
    assert "no such model file or folder" in check_model(str(tmp_path / "nope.safetensors")).message
    assert "no Stable Diffusion UNet in this file" in check_model(str(lora)).message
    assert "not a model file (.txt)" in check_model(str(tmp_path / "notes.txt")).message
    assert "not a diffusers model folder" in check_model(str(tmp_path)).message
    assert check_model(str(tiny_model)).message == "SD-1.5 · diffusers folder"
    assert check_model("tiny-sdxl").family == "SDXL"


def test_models_are_found_in_the_usual_places(tmp_path: Path, tiny_model: Path, hf_cache: Path) -> None:
    dataset = tmp_path / "work" / "photos"
    dataset.mkdir(parents=True)
    models = tmp_path / "work" / "models"
    (models / "sdxl").mkdir(parents=True)
    (models / "a.safetensors").write_bytes(b"")
    (models / "sdxl" / "b.safetensors").write_bytes(b"")  # one folder down
    (models / "sdxl" / "deeper").mkdir()
    (models / "sdxl" / "deeper" / "c.safetensors").write_bytes(b"")  # two down: not searched
    (models / "my-sd15").symlink_to(tiny_model, target_is_directory=True)
    home = tmp_path / "home"
    a1111 = home / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    comfy = home / "ComfyUI" / "models" / "checkpoints"
    for folder in (a1111, comfy):
        folder.mkdir(parents=True)
    (a1111 / "webui.safetensors").write_bytes(b"")
    (comfy / "comfy.safetensors").write_bytes(b"")
    (comfy / "notes.txt").write_text("")
    found = {m.value: m for m in find_models(dataset, cwd=tmp_path / "elsewhere", home=home)}
    assert set(found) == {str(models / "a.safetensors"), str(models / "sdxl" / "b.safetensors"),
                          str(models / "my-sd15"), str(a1111 / "webui.safetensors"),
                          str(comfy / "comfy.safetensors"), "someone/tiny-sd"}
    assert found[str(models / "my-sd15")].where == "models/ beside the dataset"
    assert found[str(a1111 / "webui.safetensors")].where == "AUTOMATIC1111 models"
    assert found[str(comfy / "comfy.safetensors")].where == "ComfyUI checkpoints"
    assert found["someone/tiny-sd"].where == "Hugging Face cache"
