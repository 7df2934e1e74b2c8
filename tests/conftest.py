"""Shared fixtures: an isolated cache/state dir for the whole session, and tiny datasets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before any loratui module reads them: every test shares one tiny model build, and no
# test touches the user's real cache or run registry.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="loratui-tests-"))
os.environ.setdefault("LORATUI_CACHE_DIR", str(_SESSION_TMP / "cache"))
os.environ["LORATUI_STATE_DIR"] = str(_SESSION_TMP / "state")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny pipeline folder (built once per session)."""
    from loratui.engine.families.tiny import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """The generated 12-image demo dataset (read-only for tests: copy it to change it)."""
    from loratui.engine.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "dataset")


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """Four captioned images of the demo subject in a fresh folder."""
    from loratui.engine.data.demo import make_demo_dataset

    folder = make_demo_dataset(tmp_path / "photos", count=4)
    return folder
