"""Captions into the UNet's text conditioning, for any family, each caption encoded once.

A frozen text encoder gives the same output for the same caption, so while the text encoders
are frozen each distinct caption is encoded once and kept (bounded, for shuffled tags). When a
text encoder trains, every call runs it, with gradients.

A caption's conditioning never depends on what was encoded before it: a batched matmul may
round a row differently with other rows beside it, so a cached caption is encoded alone, and
without the cache (shuffled tags make nearly every caption new) a call encodes exactly its own
batch. A resumed run, which starts with an empty cache, so conditions bit for bit as the
uninterrupted run did.
"""

from __future__ import annotations

from typing import Any

from loratui.engine.families import Family

CACHE_LIMIT = 4096  # distinct captions kept; shuffled tags can make many


class TextConditioner:
    """``conditioner(captions)`` → the family's named conditioning tensors, batch first."""

    def __init__(self, family: Family, encoders: dict[str, Any], tokenizers: dict[str, Any], device: Any,
                 trainable: bool = False, cache: bool = True) -> None:
        self.family = family
        self.encoders = encoders
        self.tokenizers = tokenizers
        self.device = device
        self.trainable = trainable
        self.cache = cache
        self._cache: dict[str, dict[str, Any]] = {}

    def __call__(self, captions: list[str]) -> dict[str, Any]:
        import torch

        if self.trainable:
            return self.family.encode_text(self.encoders, self.tokenizers, list(captions), self.device)
        if not self.cache:
            with torch.no_grad():
                return self.family.encode_text(self.encoders, self.tokenizers, list(captions), self.device)
        if len(self._cache) > CACHE_LIMIT:
            self._cache.clear()  # before looking up: a caption found now must still be here below
        for caption in dict.fromkeys(captions):
            if caption not in self._cache:
                with torch.no_grad():
                    encoded = self.family.encode_text(self.encoders, self.tokenizers, [caption], self.device)
                self._cache[caption] = {name: value[0].detach() for name, value in encoded.items()}
        first = self._cache[captions[0]]
        return {name: torch.stack([self._cache[c][name] for c in captions]) for name in first}
