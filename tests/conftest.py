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


# What `scripts/test` leaves out and `scripts/test --all` (CI) runs: the wizard's walks (tests/ui),
# the reliability suite (tests/reliability: kills, faults, hostile inputs) and the tests that train
# for many seconds (``slow``, set per module or test). The folders mark their own tests here, so
# a new test there is never missed by CI.
FOLDER_MARKS = {"ui": "ui", "reliability": "reliability"}


def pytest_collection_modifyitems(config, items) -> None:
    root = Path(__file__).parent
    for item in items:
        try:
            first = Path(item.fspath).relative_to(root).parts[0]
        except ValueError:
            continue
        mark = FOLDER_MARKS.get(first)
        if mark:
            item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture
def webhook():
    """A local HTTP server that keeps every JSON body posted to it: (its json:// URL, the bodies)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"json://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
