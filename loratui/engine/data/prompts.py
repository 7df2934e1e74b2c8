"""The caption a training step sees: trigger word, tag shuffle with kept tokens, dropout."""

from __future__ import annotations

import random

from loratui.engine.data.tags import join_tags, split_tags, with_trigger_first


def with_trigger(caption: str, trigger: str | None) -> str:
    """``caption`` with ``trigger`` as its first tag (once); kept in place inside a sentence tag."""
    return with_trigger_first(caption, trigger) if trigger else caption


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
        caption = join_tags(head + tail)
    if dropout > 0 and draw < dropout:
        return ""
    return caption
