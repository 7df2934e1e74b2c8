"""Comma-separated caption tags (kohya / booru style): split, join, compare, find the trigger."""

from __future__ import annotations

import re


def split_tags(text: str) -> list[str]:
    """The tags of a caption: split on commas, whitespace trimmed, empty tags dropped."""
    return [t.strip() for t in text.split(",") if t.strip()]


def join_tags(tags: list[str]) -> str:
    """Tags back into one caption, as kohya and the taggers write them: ``a, b, c``."""
    return ", ".join(t.strip() for t in tags if t.strip())


def normalise_tag(tag: str) -> str:
    """The form two tags are compared in: case, booru underscores and extra spaces ignored.

    ``Red_Hair`` and ``red  hair`` are the same tag to a reviewer, and to CLIP nearly so.
    """
    return " ".join(tag.replace("_", " ").split()).casefold()


def dedupe_tags(tags: list[str]) -> list[str]:
    """``tags`` without later repeats of a tag (compared normalised); the first one stays."""
    seen: set[str] = set()
    kept = []
    for tag in tags:
        key = normalise_tag(tag)
        if key not in seen:
            seen.add(key)
            kept.append(tag)
    return kept


def has_trigger(caption: str, trigger: str) -> bool:
    """True when ``trigger`` is in ``caption`` as a whole word or phrase (case ignored).

    ``sks`` is in ``a photo of sks dog`` and in ``sks, dog`` but not in ``sksdog``.
    """
    trigger = " ".join(trigger.split())
    if not trigger:
        return True
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in trigger.split(" ")) + r"(?!\w)"
    return re.search(pattern, caption, flags=re.IGNORECASE) is not None


def with_trigger_first(caption: str, trigger: str) -> str:
    """``caption`` with ``trigger`` as its first tag, exactly once.

    A trigger already there as its own tag moves to the front (other copies go); one that is
    already a word inside a sentence tag is left where it is, so no second copy is added.
    """
    tags = split_tags(caption)
    key = normalise_tag(trigger)
    rest = [t for t in tags if normalise_tag(t) != key]
    if len(rest) == len(tags) and has_trigger(caption, trigger):
        return join_tags(tags)
    return join_tags([trigger.strip(), *rest])
