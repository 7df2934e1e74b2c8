"""Latents on disk, reused across runs: keyed by image content, bucket size and VAE.

Encoding every image through the VAE is the slowest part of a run's start at 512 px. The
posterior (mean and std) of an image at a given bucket size depends only on the image's
bytes, the size, the preprocessing and the VAE's weights, so it is cached under those keys
in the user cache dir and a second run on the same photos starts training at once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from loratui.engine.hashing import file_sha256
from loratui.engine.paths import cache_dir

# Bump when images.fit_to_bucket/open_rgb/to_tensor change what a latent means.
PREPROCESS_VERSION = 2  # 2: large JPEGs decoded at reduced scale (images.open_rgb cover=)


def vae_fingerprint(vae: Any) -> str:
    """A short content hash of the VAE: its config and a sample of every weight tensor."""
    h = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    h.update(str(PREPROCESS_VERSION).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        flat = tensor.detach().flatten()
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(flat[:: max(1, flat.numel() // 64)][:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def image_key(path: Path) -> str:
    """A content hash of the image file (renames and copies share one entry)."""
    return file_sha256(path)[:32]


class LatentDiskCache:
    """mean/std per (image, bucket) for one VAE, as small safetensors files."""

    def __init__(self, fingerprint: str, root: Path | None = None) -> None:
        self.folder = (root or cache_dir() / "latents") / fingerprint

    def entry(self, image: Path, bucket: tuple[int, int]) -> Path:
        """Where (mean, std) of ``image`` at ``bucket`` is kept (hashes the file: look it up once)."""
        return self.folder / f"{image_key(image)}-{bucket[0]}x{bucket[1]}.safetensors"

    def get(self, image: Path, bucket: tuple[int, int]) -> tuple[Any, Any] | None:
        """The cached (mean, std), or None (a damaged entry counts as missing)."""
        return self.read(self.entry(image, bucket))

    def put(self, image: Path, bucket: tuple[int, int], mean: Any, std: Any) -> None:
        """Store (mean, std) atomically; a full disk only costs the cache, never the run."""
        self.write(self.entry(image, bucket), mean, std)

    def read(self, path: Path) -> tuple[Any, Any] | None:
        from safetensors.torch import load_file

        if not path.is_file():
            return None
        try:
            data = load_file(path)
            return data["mean"], data["std"]
        except Exception:  # a torn or foreign file: encode again and overwrite it
            return None

    def write(self, path: Path, mean: Any, std: Any) -> None:
        from safetensors.torch import save

        from loratui.engine import atomic

        try:
            data = save({"mean": mean.contiguous(), "std": std.contiguous()})
            atomic.write_bytes(path, data)
        except OSError:
            pass
