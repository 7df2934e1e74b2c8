"""A caption write changes only the caption text (issue 14, part 6; issue 13, defect 4):
the file's BOM and trailing newline, its mode and its owner stay as they were (saves went from
0644 to 0600, and `caption --overwrite` run as root left root-owned 0600 files), and the undo
journal lives in the user state dir, not in the dataset folder."""

from __future__ import annotations

import json
import os
import stat

import pytest

from reliability_kit import loratui

pytestmark = pytest.mark.reliability


def _folder(tmp_path, captions: dict[str, bytes]):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in captions.items():
        (folder / name).with_suffix(".png").write_bytes(b"\x89PNG not decoded by the store")
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"a cat\n", b"a dog\n"),
        (b"a cat", b"a dog"),
        (b"a cat\r\n", b"a dog\r\n"),
        (b"\xef\xbb\xbfa cat\r\n", b"\xef\xbb\xbfa dog\r\n"),
    ],
    ids=["newline", "none", "crlf", "bom-crlf"],
)
def test_an_edit_keeps_the_trailing_newline_or_its_absence(tmp_path, before, after):
    from loratui.engine.data.captionstore import CaptionStore

    folder = _folder(tmp_path, {"x.txt": before})
    store = CaptionStore(folder)
    store.set_caption("x.png", "a dog")
    assert (folder / "x.txt").read_bytes() == after
    store.undo()
    assert (folder / "x.txt").read_bytes() == before


def test_an_unchanged_caption_is_not_rewritten(tmp_path):
    from loratui.engine.data.captionstore import CaptionStore

    folder = _folder(tmp_path, {"x.txt": b"a cat\n"})
    result = CaptionStore(folder).set_caption("x.png", "a cat")
    assert result.changed == 0  # it was a change before: the newline was dropped


@pytest.mark.parametrize("mode", [0o644, 0o664, 0o600, 0o444])
def test_an_edit_keeps_the_files_mode(tmp_path, mode):
    from loratui.engine.data.captionstore import CaptionStore

    folder = _folder(tmp_path, {"x.txt": b"a cat"})
    os.chmod(folder / "x.txt", mode)
    store = CaptionStore(folder)
    store.set_caption("x.png", "a dog")
    assert stat.S_IMODE(os.stat(folder / "x.txt").st_mode) == mode
    store.undo()
    assert stat.S_IMODE(os.stat(folder / "x.txt").st_mode) == mode


def test_a_new_caption_gets_the_mode_the_umask_gives(tmp_path):
    from loratui.engine.data.captionstore import CaptionStore

    folder = _folder(tmp_path, {})
    (folder / "y.png").write_bytes(b"\x89PNG")
    old = os.umask(0o022)
    try:
        CaptionStore(folder).set_caption("y.png", "a bird")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(folder / "y.txt").st_mode) == 0o644  # it was 0600


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_caption_overwrite_as_root_keeps_the_users_files(tmp_path):
    """`sudo loratui caption --overwrite` left root-owned 0600 captions the user could not edit."""
    folder = _folder(tmp_path, {"red_fox.txt": b"old words\n"})
    (folder / "blue_bird.png").write_bytes((folder / "red_fox.png").read_bytes())
    os.chown(folder, 4321, 4321)
    for name in ("red_fox.txt", "red_fox.png", "blue_bird.png"):
        os.chown(folder / name, 4321, 4321)
    os.chmod(folder / "red_fox.txt", 0o664)
    result = loratui("caption", str(folder), "--captioner", "filename", "--overwrite")
    assert result.returncode == 0, result.stderr
    for name, mode in (("red_fox.txt", 0o664), ("blue_bird.txt", 0o644)):  # replaced, and new
        st = os.stat(folder / name)
        assert (st.st_uid, st.st_gid) == (4321, 4321), name
        assert stat.S_IMODE(st.st_mode) & 0o044 == mode & 0o044, oct(st.st_mode)
    assert (folder / "red_fox.txt").read_bytes() == b"red fox\n"


def test_the_journal_is_kept_outside_the_dataset(tmp_path):
    from loratui.engine import paths
    from loratui.engine.data.captionstore import CaptionStore, journal_path

    folder = _folder(tmp_path, {"x.txt": b"a cat"})
    CaptionStore(folder).set_caption("x.png", "a dog")
    assert sorted(p.name for p in folder.iterdir()) == ["x.png", "x.txt"]  # no .loratui/
    journal = journal_path(folder)
    assert paths.state_dir() in journal.parents and journal.is_file()
    assert json.loads(journal.read_text())["folder"] == str(folder.resolve())
    reopened = CaptionStore(folder)  # a new session finds the history by the folder's path
    assert reopened.history() == ["edit x.png"]
    reopened.undo()
    assert (folder / "x.txt").read_bytes() == b"a cat"


def test_an_old_journal_in_the_dataset_is_moved_out_and_still_undoes(tmp_path):
    from loratui.engine.data.captionstore import CaptionStore, journal_path

    folder = _folder(tmp_path, {"x.txt": b"a dog"})
    old = folder / ".loratui" / "journal.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"version": 1, "undone": [], "done": [{
        "label": "edit x.png", "t": 0,
        "changes": [{"file": "x.txt", "before": {"text": "a cat"}, "after": {"text": "a dog"}}]}]}))
    store = CaptionStore(folder)
    assert store.history() == ["edit x.png"]
    assert not (folder / ".loratui").exists() and journal_path(folder).is_file()
    store.undo()
    assert (folder / "x.txt").read_bytes() == b"a cat"
