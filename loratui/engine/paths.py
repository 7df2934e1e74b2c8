"""Where loratui keeps its own files: the user cache and state directories (XDG)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache dir (``$LORATUI_CACHE_DIR`` wins, so tests and CI can isolate it)."""
    env = os.environ.get("LORATUI_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("loratui", appauthor=False))


def state_dir() -> Path:
    """The user state dir, home of the run registry (``$LORATUI_STATE_DIR`` wins)."""
    env = os.environ.get("LORATUI_STATE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_state_dir

    return Path(user_state_dir("loratui", appauthor=False))
