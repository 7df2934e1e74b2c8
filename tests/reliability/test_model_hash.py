"""The ``sshs_*`` hashes A1111 and civitai show for a LoRA (issue 14, part 6): the legacy hash
was taken over the file without its metadata, so it never matched kohya's, which hashes the
file serialised with its ``ss_*`` training metadata. Checked here against the hashes computed
independently, the way kohya's sd-scripts does, from the file as written."""

from __future__ import annotations

import hashlib
import io

import pytest

pytestmark = pytest.mark.reliability


def _kohya_hashes(tensors, metadata: dict[str, str]) -> tuple[str, str]:
    """sd-scripts' precalculate_safetensors_hashes, restated: serialise with the ss_* keys only,
    sha256 of the data after the header, and of 64 KiB at 1 MiB (first 8 hex digits)."""
    from safetensors.torch import save

    buffer = io.BytesIO(save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")}))
    header = int.from_bytes(buffer.read(8), "little")
    buffer.seek(8 + header)
    model = hashlib.sha256(buffer.read()).hexdigest()
    buffer.seek(0x100000)
    legacy = hashlib.sha256(buffer.read(0x10000)).hexdigest()[:8]
    return model, legacy


def test_the_written_hashes_are_kohyas(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from loratui.engine.export.lora_files import kohya_metadata, save_kohya

    gen = torch.Generator().manual_seed(0)
    tensors = {  # about 2 MiB, so the legacy hash reads real bytes at 1 MiB
        f"lora_unet_block_{n}.lora_down.weight": torch.randn(64, 4096, generator=gen, dtype=torch.float32)
        for n in range(2)
    }
    metadata = {**kohya_metadata(network_dim=4, tag_frequency={"photos": {"zxq": 3}}, output_name="run"),
                "modelspec.title": "run"}
    path = save_kohya(tmp_path / "run.safetensors", tensors, metadata)

    with safe_open(str(path), "pt") as fh:
        written = fh.metadata()
    on_disk = load_file(str(path))
    stored = {k: v for k, v in written.items() if not k.startswith("sshs_")}
    model, legacy = _kohya_hashes(on_disk, stored)
    assert written["sshs_model_hash"] == model
    assert written["sshs_legacy_hash"] == legacy
    # the legacy hash depends on the training metadata (it did not before)
    assert legacy != _kohya_hashes(on_disk, {})[1]
    assert legacy != hashlib.sha256(b"").hexdigest()[:8]
