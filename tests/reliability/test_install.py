"""The dev/test venv is the lock: a fresh clone gets the versions main was tested with."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements-dev.lock"

pytestmark = pytest.mark.reliability


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_every_dependency_of_loratui_is_pinned_in_the_lock() -> None:
    pins = _locked()
    wanted = metadata.requires("loratui") or []
    names = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", r, 1)[0]).lower() for r in wanted}
    assert names and names <= set(pins), sorted(names - set(pins))


def test_the_venv_running_the_tests_was_built_from_the_lock() -> None:
    import os

    if os.environ.get("LORATUI_DEPS") == "latest":
        pytest.skip("LORATUI_DEPS=latest tests the newest releases on purpose")
    drift = {}
    for name, version in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift[name] = (version, None)
            continue
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"venv differs from requirements-dev.lock: {drift}"
