"""The caption a training step sees: trigger word, tag shuffle with kept tokens, dropout."""

from __future__ import annotations

import random


def split_tags(caption: str) -> list[str]:
    """Comma-separated tags, stripped, empties dropped."""
    return [t.strip() for t in caption.split(",") if t.strip()]


def with_trigger(caption: str, trigger: str | None) -> str:
    """``caption`` with ``trigger`` as its first tag, unless it already has it as a tag or word."""
    if not trigger:
        return caption
    tags = split_tags(caption)
    lowered = trigger.lower()
    if any(t.lower() == lowered for t in tags) or f" {lowered} " in f" {caption.lower()} ":
        return caption
    return ", ".join([trigger, *tags])


def training_caption(
    caption: str,
    trigger: str | None,
    rng: random.Random,
    shuffle: bool = False,
    keep_tokens: int = 1,
    dropout: float = 0.0,
) -> str:
    """The caption for one image at one step. ``rng`` makes the choice repeatable.

    The trigger word goes first and is one of the ``keep_tokens`` that never move, so the
    LoRA ties the subject to it; the rest may be shuffled so no tag order is learned.
    Dropout trains an empty caption sometimes, which helps the LoRA follow other prompts.
    """
    draw = rng.random()  # drawn always, so the stream does not depend on the options
    caption = with_trigger(caption, trigger)
    if shuffle:
        tags = split_tags(caption)
        head, tail = tags[:keep_tokens], tags[keep_tokens:]
        rng.shuffle(tail)
        caption = ", ".join(head + tail)
    if dropout > 0 and draw < dropout:
        return ""
    return caption
