"""Fixtures for the dataset tests. Helpers live in dataset_corpus.py: a module named
``conftest`` cannot be imported by tests, as tests/conftest.py has the same name."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_corpus import build_bad_corpus


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bad_corpus(tmp_path_factory.mktemp("corpus"))
