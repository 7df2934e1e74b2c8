"""The caption store: operations, undo/redo byte for byte, metadata.csv, path safety, crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loratui.engine import atomic
from loratui.engine.data.captionstore import JOURNAL_DIR, CaptionStore, clean_caption
from loratui.engine.data.dataset import read_metadata_csv
from loratui.engine.errors import DatasetError

IMAGES = ["a.png", "b.jpg", "c, with comma.png", "10_cat/d.webp", "café 猫.png"]


def make_folder(root: Path, captions: dict[str, bytes | None], metadata: str | None = None) -> Path:
    """Images (the store never opens them, so a few bytes will do) with the given sidecars."""
    for name in IMAGES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG fake")
        data = captions.get(name)
        if data is not None:
            path.with_suffix(".txt").write_bytes(data)
    if metadata is not None:
        (root / "metadata.csv").write_text(metadata, encoding="utf-8")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes, the store's own journal aside."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and JOURNAL_DIR not in p.relative_to(root).parts
    }


@pytest.fixture
def store(tmp_path: Path) -> CaptionStore:
    make_folder(
        tmp_path,
        {
            "a.png": b"sks, red hair, smiling, red_hair",
            "b.jpg": b"\xef\xbb\xbfa photo of a dog, outdoors\r\n",
            "c, with comma.png": b"caf\xe9",  # latin-1: unreadable, must never be touched by bulk ops
        },
        metadata='filename,prompt\n"10_cat/d.webp","cat, sitting"\nb.jpg,"old caption"\n',
    )
    return CaptionStore(tmp_path)


def test_reads_sidecars_metadata_and_repeats(store):
    by = {e.rel: e for e in store.entries}
    assert by["a.png"].source == "sidecar" and by["a.png"].caption == "sks, red hair, smiling, red_hair"
    assert by["b.jpg"].caption == "a photo of a dog, outdoors"  # BOM and CRLF are not caption
    assert by["c, with comma.png"].source == "unreadable" and by["c, with comma.png"].caption is None
    assert by["10_cat/d.webp"].source == "metadata" and by["10_cat/d.webp"].repeats == 10
    assert by["café 猫.png"].source == "none"


def test_tag_operations(store, tmp_path):
    assert store.dedupe_tags().changed == 1
    assert store.caption("a.png") == "sks, red hair, smiling"
    store.add_trigger("sks")
    assert store.caption("a.png") == "sks, red hair, smiling"  # already first: untouched
    assert store.caption("b.jpg") == "sks, a photo of a dog, outdoors"
    assert store.caption("café 猫.png") == "sks"  # an uncaptioned image gets the trigger
    assert store.caption("10_cat/d.webp") == "sks, cat, sitting"
    assert (tmp_path / "c, with comma.txt").read_bytes() == b"caf\xe9"
    store.replace_tag("Red_Hair", "long hair")
    assert store.caption("a.png") == "sks, long hair, smiling"
    store.remove_tag("smiling")
    assert store.caption("a.png") == "sks, long hair"
    store.add_prefix("masterpiece, ", rels=["a.png"])
    store.add_suffix(", 4k", rels=["a.png"])
    assert store.caption("a.png") == "masterpiece, sks, long hair, 4k"
    assert sorted(store.find(tag="SKS")) == sorted(["a.png", "b.jpg", "10_cat/d.webp", "café 猫.png"])
    assert store.find(text="DOG") == ["b.jpg"]
    freq = dict(store.tag_frequencies())
    assert freq["sks"] == 4 and freq["long hair"] == 1
    # the metadata.csv row follows the sidecar, so the two never disagree
    assert read_metadata_csv(tmp_path)["10_cat/d.webp"] == "sks, cat, sitting"
    assert (tmp_path / "10_cat/d.txt").read_text() == "sks, cat, sitting"


def test_trigger_moves_to_front_once(store):
    store.set_caption("a.png", "red hair, sks, smiling, SKS")
    store.add_trigger("sks", rels=["a.png"])
    assert store.caption("a.png") == "sks, red hair, smiling"
    store.set_caption("a.png", "a photo of sks dog")
    assert store.add_trigger("sks", rels=["a.png"]).changed == 0


def test_undo_redo_and_history(store, tmp_path):
    before = snapshot(tmp_path)
    store.add_trigger("sks")
    store.set_caption("a.png", "  edited by hand \n")
    after = snapshot(tmp_path)
    assert store.caption("a.png") == "edited by hand"
    assert store.history() == ["add trigger 'sks'", "edit a.png"]
    store.undo()
    store.undo()
    assert snapshot(tmp_path) == before and not store.can_undo
    # the journal is on disk: a new store (a new session) can redo
    again = CaptionStore(tmp_path)
    again.redo()
    again.redo()
    assert snapshot(tmp_path) == after and again.redo() is None


def test_undo_refuses_to_overwrite_a_later_hand_edit(store, tmp_path):
    store.set_caption("a.png", "mine")
    (tmp_path / "a.txt").write_text("edited in vim")
    with pytest.raises(DatasetError, match="changed since"):
        store.undo()
    assert (tmp_path / "a.txt").read_text() == "edited in vim"


def test_set_caption_overwrites_an_unreadable_one_undoably(store, tmp_path):
    store.set_caption("c, with comma.png", "café")
    assert (tmp_path / "c, with comma.txt").read_text(encoding="utf-8") == "café"
    store.undo()
    assert (tmp_path / "c, with comma.txt").read_bytes() == b"caf\xe9"


def test_nothing_outside_the_folder(tmp_path):
    folder = make_folder(tmp_path / "ds", {"a.png": b"x"})
    outside = tmp_path / "secret.txt"
    outside.write_text("do not touch")
    os.symlink(outside, folder / "b.txt")  # b.jpg's caption is a link out of the folder
    store = CaptionStore(folder)
    assert store.caption("b.jpg") is None  # not read through the link
    with pytest.raises(DatasetError, match="link"):
        store.set_caption("b.jpg", "overwrite?")
    with pytest.raises(DatasetError, match="outside"):
        store.set_caption("../secret.png", "x")  # its caption would be ../secret.txt
    assert outside.read_text() == "do not touch"


def test_write_metadata_csv_round_trips_and_undoes(store, tmp_path):
    original = (tmp_path / "metadata.csv").read_bytes()
    store.set_caption("a.png", 'quote " comma, newline\nand 猫')
    store.write_metadata_csv()
    rows = read_metadata_csv(tmp_path)
    assert rows["a.png"] == 'quote " comma, newline\nand 猫'
    assert "c, with comma.png" not in rows  # unreadable: no caption to write
    store.undo()
    assert (tmp_path / "metadata.csv").read_bytes() == original


caption_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(captions=st.lists(caption_text, min_size=len(IMAGES), max_size=len(IMAGES)))
def test_any_caption_round_trips_through_metadata_csv(captions):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp), {})
        store = CaptionStore(root)
        store.set_captions(dict(zip(IMAGES, captions)))
        store.write_metadata_csv()
        expected = {rel: clean_caption(text) for rel, text in zip(IMAGES, captions)}
        assert read_metadata_csv(root) == expected
        assert {e.rel: e.caption for e in CaptionStore(root).entries} == expected


tag = st.sampled_from(["sks", "red hair", "Red_Hair", "smiling", "a photo", "猫", 'say "hi"', ""])
raw_caption = st.one_of(
    st.none(),
    st.binary(max_size=20),
    st.lists(tag, max_size=5).map(lambda t: ", ".join(t).encode()),
    st.lists(tag, max_size=5).map(lambda t: ("\ufeff" + ",".join(t) + "\r\n").encode()),
)
image = st.sampled_from(IMAGES)
operation = st.one_of(
    st.tuples(st.just("set_caption"), image, caption_text),
    st.tuples(st.just("add_trigger"), st.sampled_from(["sks", "ohwx man"])),
    st.tuples(st.just("remove_tag"), tag),
    st.tuples(st.just("replace_tag"), tag, tag),
    st.tuples(st.just("dedupe_tags")),
    st.tuples(st.just("add_prefix"), st.sampled_from(["best, ", "x"])),
    st.tuples(st.just("add_suffix"), st.sampled_from([", 4k", "!"])),
    st.tuples(st.just("write_metadata_csv")),
    st.tuples(st.just("undo")),
    st.tuples(st.just("redo")),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(raw_caption, min_size=len(IMAGES), max_size=len(IMAGES)),
    with_csv=st.booleans(),
    ops=st.lists(operation, max_size=12),
)
def test_any_operations_then_undo_restores_every_byte(initial, with_csv, ops):
    with tempfile.TemporaryDirectory() as tmp:
        metadata = 'filename,prompt\r\n"a.png","from, csv"\r\n10_cat/d.webp,\r\n' if with_csv else None
        root = make_folder(Path(tmp), dict(zip(IMAGES, initial)), metadata)
        before = snapshot(root)
        store = CaptionStore(root)
        for name, *args in ops:
            getattr(store, name)(*args)
        after = snapshot(root)
        done = len(store.history())
        while store.can_undo:
            store.undo()
        assert snapshot(root) == before
        for _ in range(done):  # redo what was done (not what the sequence itself undid)
            store.redo()
        assert snapshot(root) == after


@pytest.mark.parametrize("failing", ["a.txt", "journal.json", "metadata.csv"])
def test_a_failed_write_leaves_every_file_as_it_was(store, tmp_path, monkeypatch, failing):
    real_replace = os.replace
    before = snapshot(tmp_path)

    def no_space(src, dst):
        if Path(dst).name == failing:
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", no_space)
    with pytest.raises(DatasetError, match="No space left"):
        # b.txt is written before a.txt fails: it must be put back
        store.set_captions({"b.jpg": "new b", "a.png": "new a", "10_cat/d.webp": "new d"})
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert not store.can_undo and store.caption("a.png") == "sks, red hair, smiling, red_hair"


KILL_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from loratui.engine import atomic
    from loratui.engine.data.captionstore import CaptionStore

    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        name = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.basename(name).startswith(".b.txt."):
            os.kill(os.getpid(), signal.SIGKILL)  # the power goes while b.txt is being written
    atomic.os.fsync = fsync
    CaptionStore(sys.argv[1]).add_trigger("sks")
    """
)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_a_write_killed_mid_way_leaves_the_old_caption_and_can_be_undone(store, tmp_path):
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(tmp_path)], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "b.txt").read_bytes() == before["b.txt"]  # the old caption, whole
    assert (tmp_path / "a.txt").read_bytes() == before["a.txt"]  # already had the trigger first
    reopened = CaptionStore(tmp_path)
    assert reopened.history() == ["add trigger 'sks'"]  # the journal knew before the crash
    reopened.undo()
    after_undo = snapshot(tmp_path)
    assert {k: v for k, v in after_undo.items() if not k.startswith(".")} == before
