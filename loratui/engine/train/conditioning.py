"""Captions into the UNet's text conditioning, for any family, each caption encoded once.

A frozen text encoder gives the same output for the same caption, so while the text encoders
are frozen each distinct caption is encoded once and kept (bounded, for shuffled tags). When a
text encoder trains, every call runs it, with gradients.

The captions a run trains on are known before its first step when tags are not shuffled:
``encode_ahead`` encodes them then, so the steps run the UNet alone (on a full-size SD-1.5 on
the CPU one caption costs about a tenth of a 64 px step, and every caption's first step paid it).

A caption's conditioning never depends on what was encoded before it: a batched matmul may
round a row differently with other rows beside it, so a cached caption is encoded alone, and
without the cache (shuffled tags make nearly every caption new) a call encodes exactly its own
batch. A resumed run, which starts with an empty cache, so conditions bit for bit as the
uninterrupted run did.
"""

from __future__ import annotations

from typing import Any, Callable

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

    def encode_ahead(self, captions: list[str], progress: Callable[[int, int], None] | None = None) -> None:
        """Encode ``captions`` now (before the first step, as latents are cached), so no training
        step waits for the text encoder; each alone, exactly as a step would encode it. Only for
        a frozen encoder with the cache, and only as many as the cache keeps."""
        todo = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if self.trainable or not self.cache or len(self._cache) + len(todo) > CACHE_LIMIT:
            return
        if progress is not None and todo:
            progress(0, len(todo))
        for n, caption in enumerate(todo, 1):
            self._keep(caption)
            if progress is not None:
                progress(n, len(todo))

    def _keep(self, caption: str) -> None:
        """Encode ``caption`` alone (its rows never depend on what else is in a batch) and keep it."""
        import torch

        with torch.no_grad():
            encoded = self.family.encode_text(self.encoders, self.tokenizers, [caption], self.device)
        self._cache[caption] = {name: value[0].detach() for name, value in encoded.items()}

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
                self._keep(caption)
        first = self._cache[captions[0]]
        return {name: torch.stack([self._cache[c][name] for c in captions]) for name in first}
