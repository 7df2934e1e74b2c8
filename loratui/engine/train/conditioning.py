"""Captions into the UNet's text conditioning, for any family, each caption encoded once.

A frozen text encoder gives the same output for the same caption, so while the text encoders
are frozen each distinct caption is encoded once and kept (bounded, for shuffled tags). When a
text encoder trains, every call runs it, with gradients.
"""

from __future__ import annotations

from typing import Any

from loratui.engine.families import Family

CACHE_LIMIT = 4096  # distinct captions kept; shuffled tags can make many


class TextConditioner:
    """``conditioner(captions)`` → the family's named conditioning tensors, batch first."""

    def __init__(self, family: Family, encoders: dict[str, Any], tokenizers: dict[str, Any], device: Any,
                 trainable: bool = False) -> None:
        self.family = family
        self.encoders = encoders
        self.tokenizers = tokenizers
        self.device = device
        self.trainable = trainable
        self._cache: dict[str, dict[str, Any]] = {}

    def __call__(self, captions: list[str]) -> dict[str, Any]:
        import torch

        if self.trainable:
            return self.family.encode_text(self.encoders, self.tokenizers, list(captions), self.device)
        if len(self._cache) > CACHE_LIMIT:
            self._cache.clear()  # before looking up: a caption found now must still be here below
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if missing:
            with torch.no_grad():
                encoded = self.family.encode_text(self.encoders, self.tokenizers, missing, self.device)
            for n, caption in enumerate(missing):
                self._cache[caption] = {name: value[n].detach() for name, value in encoded.items()}
        first = self._cache[captions[0]]
        return {name: torch.stack([self._cache[c][name] for c in captions]) for name in first}
