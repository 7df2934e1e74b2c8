"""Checks on untrusted files before a parser sees them."""

from __future__ import annotations

from pathlib import Path

from loratui.engine.errors import ModelError

# A real header (tensor names, shapes, offsets, metadata) is at most a few MB; 100 MB leaves
# room for anything honest while refusing a crafted length before it is allocated.
MAX_SAFETENSORS_HEADER = 100 * 2**20


def check_safetensors_header(path: Path) -> None:
    """Refuse a .safetensors file whose header length is impossible or absurd, before parsing."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            prefix = fh.read(8)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror})", "check the path and permissions") from None
    if len(prefix) < 8:
        raise ModelError(f"{path}: too short to be a safetensors file", "re-download or re-export it")
    header_len = int.from_bytes(prefix, "little")
    if header_len > MAX_SAFETENSORS_HEADER or header_len > size - 8 or header_len < 2:
        raise ModelError(
            f"{path}: not a valid safetensors file (its header claims {header_len} bytes of {size})",
            "re-download or re-export it",
        )
    with open(path, "rb") as fh:
        fh.seek(8)
        first = fh.read(1)
    if first != b"{":
        raise ModelError(f"{path}: not a valid safetensors file (no JSON header)", "re-download or re-export it")
