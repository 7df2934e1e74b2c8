"""Latents cached on disk by image content, bucket and VAE, and reused across runs."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from loratui.engine.data.latent_cache import image_key
from loratui.engine.train.loop import train
from tinyrun import tiny_config


def _entries() -> list[Path]:
    root = Path(os.environ["LORATUI_CACHE_DIR"]) / "latents"
    return sorted(root.rglob("*.safetensors"))


def test_second_run_reads_the_disk_cache_and_copies_share_entries(tmp_path, small_dataset, monkeypatch):
    monkeypatch.setenv("LORATUI_CACHE_DIR", str(tmp_path / "cache"))  # its own cache: it doctors entries
    before = set(_entries())
    train(tiny_config(small_dataset, tmp_path, steps=1, save_every=0, sample_every=0), tmp_path / "a")
    new = sorted(set(_entries()) - before)
    assert len(new) == 4  # one per image at its bucket
    assert all("-" in p.stem and "x" in p.stem.split("-")[-1] for p in new)

    # A renamed copy of the dataset: same content, so no new entries.
    copy = tmp_path / "renamed"
    shutil.copytree(small_dataset, copy)
    for p in copy.glob("demo_*"):
        p.rename(p.with_name("x" + p.name))
    train(tiny_config(copy, tmp_path, steps=1, save_every=0, sample_every=0), tmp_path / "b")
    assert set(_entries()) - before == set(new)

    # Prove the entries are what training reads: doctor them, and the loss changes.
    for p in new:
        data = load_file(p)
        save_file({"mean": torch.zeros_like(data["mean"]), "std": torch.zeros_like(data["std"])}, p)
    events: list = []
    train(tiny_config(small_dataset, tmp_path, steps=1, save_every=0, sample_every=0, validation="off"),
          tmp_path / "c", [events.append])
    plain: list = []
    train(tiny_config(small_dataset, tmp_path, steps=1, save_every=0, sample_every=0, validation="off",
                      cache_latents_to_disk=False), tmp_path / "d", [plain.append])
    loss = [e.loss for e in events if e.event == "step"][0]
    ref = [e.loss for e in plain if e.event == "step"][0]
    assert loss != ref


def test_an_image_edited_in_place_gets_a_new_key(tmp_path):
    """Hashes are kept per file version (a run hashes each image for its identity and for this
    cache): an edit in place, even one of the same size, is a new key, never a stale one."""
    image = tmp_path / "a.png"
    image.write_bytes(b"first version")
    first = image_key(image)
    assert image_key(image) == first == hashlib.sha256(b"first version").hexdigest()[:32]
    stat = image.stat()
    image.write_bytes(b"other version")  # same size
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert image_key(image) == hashlib.sha256(b"other version").hexdigest()[:32]
