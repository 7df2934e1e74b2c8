"""Nothing outside the dataset reaches a LoRA, and no file in it can hang a run (issue 14,
parts 1 and 5): ``train`` reads only what ``check`` would read, under the one rule of
``dataset.refuse_reason``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reliability_kit import env, load_lora

pytestmark = pytest.mark.reliability

SECRET = "AKIA-LORATUI-FAKE-SECRET-7f3a9c"


def _photos_with_a_caption_linked_out(tmp_path: Path, rel_dataset: Path) -> Path:
    """The demo photos, one of whose captions is a link to a file outside holding SECRET."""
    outside = tmp_path / "outside" / "credentials.txt"
    outside.parent.mkdir()
    outside.write_text(f"token {SECRET}\n")
    folder = tmp_path / "photos"
    shutil.copytree(rel_dataset, folder)
    caption = sorted(folder.glob("*.txt"))[0]
    caption.unlink()
    caption.symlink_to(outside)
    return folder


def test_a_caption_linked_outside_never_reaches_the_lora(tmp_path, rel_dataset):
    from safetensors import safe_open

    from loratui.engine.events import WarningRaised
    from loratui.engine.train.loop import train
    from tinyrun import tiny_config

    folder = _photos_with_a_caption_linked_out(tmp_path, rel_dataset)
    linked = sorted(p.name for p in folder.glob("*.txt") if p.is_symlink())[0]
    warnings: list[str] = []
    sink = lambda e: warnings.append(e.message) if isinstance(e, WarningRaised) else None  # noqa: E731
    cfg = tiny_config(folder, tmp_path / "out", steps=3, save_every=0, sample_every=0, validation="off")
    result = train(cfg, tmp_path / "out" / "run", [sink])

    assert result.status == "finished"
    raw = result.lora_path.read_bytes()
    assert SECRET.encode() not in raw, "the linked file's text is in the LoRA"
    with safe_open(str(result.lora_path), "pt") as fh:
        metadata = fh.metadata() or {}
    assert all(SECRET not in value for value in metadata.values())
    assert "ss_tag_frequency" in metadata  # the metadata that leaked it is still written
    told = [w for w in warnings if linked in w and "outside the folder" in w]
    assert told, f"no warning names {linked}: {warnings}"
    assert all(SECRET not in line for line in (tmp_path / "out" / "run" / "events.jsonl").read_text().splitlines())
    assert load_lora(result.lora_path)  # a LoRA still came out of the other images


def test_check_and_train_refuse_the_same_linked_files(tmp_path, rel_dataset):
    """One rule: every file `check` calls unsafe_path, the training scan does not read."""
    from loratui.engine.data.dataset import scan

    folder = _photos_with_a_caption_linked_out(tmp_path, rel_dataset)
    outside_csv = tmp_path / "outside" / "metadata.csv"
    outside_csv.write_text(f"filename,prompt\n{sorted(folder.glob('*.png'))[1].name},{SECRET}\n")
    (folder / "metadata.csv").symlink_to(outside_csv)
    outside_png = tmp_path / "outside" / "secret.png"
    shutil.copy2(sorted(folder.glob("*.png"))[0], outside_png)
    (folder / "link.png").symlink_to(outside_png)

    result = subprocess.run([sys.executable, "-m", "loratui", "check", str(folder), "--json"],
                            capture_output=True, text=True, env=env(), timeout=120)
    unsafe = {f["path"] for f in json.loads(result.stdout)["findings"] if f["code"] == "unsafe_path"}
    dataset = scan(folder)
    assert all(SECRET not in (image.caption or "") for image in dataset.images)
    assert "link.png" not in {image.rel for image in dataset.images}
    told = " ".join(dataset.notes)
    for name in unsafe:
        assert name in told, f"check refuses {name}, the training scan does not say so: {dataset.notes}"


def _plan_in_a_thread(cfg, timeout: float = 30):
    from loratui.engine.planning.run_plan import plan_run

    out: dict = {}

    def work() -> None:
        try:
            out["plan"] = plan_run(cfg)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout)
    return worker.is_alive(), out


@pytest.mark.parametrize("name", ["x.png", "x.txt", "metadata.csv"])
def test_a_fifo_in_the_dataset_is_skipped_not_waited_on(tmp_path, rel_dataset, name):
    """A FIFO named like an image or a caption used to block the scan forever."""
    from tinyrun import tiny_config

    folder = tmp_path / "photos"
    shutil.copytree(rel_dataset, folder)
    if name == "x.txt":
        shutil.copy2(sorted(folder.glob("*.png"))[0], folder / "x.png")
    os.mkfifo(folder / name)
    hung, out = _plan_in_a_thread(tiny_config(folder, tmp_path / "out"))
    if hung:
        with open(folder / name, "wb"):  # unblock the stuck reader so the thread can end
            pass
    assert not hung, f"planning a run blocks on the FIFO {name}"
    assert "error" not in out, out.get("error")
    assert any(name in w and "FIFO" in w for w in out["plan"].warnings), out["plan"].warnings


def test_train_and_presets_with_a_fifo_image_finish_promptly(tmp_path, rel_dataset):
    folder = tmp_path / "photos"
    shutil.copytree(rel_dataset, folder)
    os.mkfifo(folder / "x.png")
    run = [sys.executable, "-m", "loratui"]
    try:
        presets = subprocess.run([*run, "presets", str(folder)], capture_output=True, text=True,
                                 env=env(), timeout=60, stdin=subprocess.DEVNULL)
        trained = subprocess.run(
            [*run, "train", str(folder), "--base-model", "tiny", "--resolution", "64", "--steps", "2",
             "--save-every", "0", "--sample-every", "0", "--output", str(tmp_path / "out"), "--json"],
            capture_output=True, text=True, env=env(), timeout=120, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(map(str, exc.cmd[3:5]))} hangs on a FIFO named x.png")
    assert presets.returncode == 0, presets.stderr
    assert trained.returncode == 0, trained.stderr
    events = [json.loads(line) for line in trained.stdout.splitlines() if line.startswith("{")]
    assert any(e["event"] == "warning" and "x.png" in e["message"] for e in events)


def test_check_with_a_fifo_caption_answers_promptly(tmp_path, rel_dataset):
    """`check` read every .txt it found, so a FIFO caption blocked it forever."""
    folder = tmp_path / "photos"
    shutil.copytree(rel_dataset, folder)
    shutil.copy2(sorted(folder.glob("*.png"))[0], folder / "x.png")
    os.mkfifo(folder / "x.txt")
    try:
        result = subprocess.run([sys.executable, "-m", "loratui", "check", str(folder), "--json"],
                                capture_output=True, text=True, env=env(), timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("`loratui check` blocks on a FIFO named x.txt")
    findings = {(f["path"], f["code"]) for f in json.loads(result.stdout)["findings"]}
    assert ("x.txt", "unreadable_caption") in findings, findings


def test_an_image_that_is_a_link_loop_is_skipped_with_a_note(tmp_path, rel_dataset):
    """`Path.resolve` raised RuntimeError on a link loop (Python < 3.13): the scan crashed."""
    from loratui.engine.data.dataset import scan

    folder = tmp_path / "photos"
    shutil.copytree(rel_dataset, folder)
    (folder / "a.png").symlink_to("b.png")
    (folder / "b.png").symlink_to("a.png")
    dataset = scan(folder)
    assert len(dataset.images) == len(list(rel_dataset.glob("*.png")))
    assert any("a.png" in note and "cannot be read" in note for note in dataset.notes), dataset.notes
