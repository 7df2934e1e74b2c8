"""The whole wizard, driven by keys: folder → captions (edits on disk, undo, redo, trigger,
filter, Back keeps state) → preset (validation as typed) → a real tiny run to the end."""

from __future__ import annotations

from pathlib import Path

from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app
from loratui.screens.captions import CaptionsScreen
from loratui.screens.folder import FolderScreen
from loratui.screens.preset import PresetScreen
from loratui.screens.run import RunScreen

SETTINGS = dict(base_model="tiny", resolution=64, steps=6, save_every=3, batch_size=2, lr=1e-3)


@async_test
async def test_the_wizard_from_folder_to_a_finished_run(photos: Path, tmp_path: Path, tiny_model) -> None:
    app = build_app(photos, output_dir=tmp_path / "runs", defaults=dict(SETTINGS))
    async with app.run_test(size=(80, 24)) as pilot:
        # 1. the folder: its summary, then Next past the warning (six images is few)
        assert isinstance(app.screen, FolderScreen)
        await wait_for(pilot, lambda: "6 images · 6 captioned" in screen_text(app), 20, "the summary")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "warning(s)?" in screen_text(app), 30, "the warnings dialog")
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, CaptionsScreen), 10, "the captions step")
        captions = app.screen
        await wait_for(pilot, lambda: captions.store is not None and captions.current is not None, 20, "the store")
        assert captions.current_rel == "demo_00.png"

        # 2. captions: edit in place; the edit is on disk at once, undo and redo restore it
        original = (photos / "demo_01.txt").read_text()
        await pilot.press("j")
        assert captions.current_rel == "demo_01.png"
        await pilot.press("e", *", wet fur", "enter")
        await wait_for(pilot, lambda: (photos / "demo_01.txt").read_text().rstrip("\n").endswith(", wet fur"), 10, "the save")
        await pilot.press("u")
        await wait_for(pilot, lambda: (photos / "demo_01.txt").read_text() == original, 10, "the undo")
        await pilot.press("U")
        await wait_for(pilot, lambda: (photos / "demo_01.txt").read_text().rstrip("\n").endswith(", wet fur"), 10, "the redo")
        # Esc cancels an edit: nothing is written
        await pilot.press("e", *" oops", "escape")
        await pilot.pause(0.3)
        assert "oops" not in (photos / "demo_01.txt").read_text()
        assert captions.current_rel == "demo_01.png"

        # the trigger word, put first in every caption as one undoable change
        await pilot.press("t")
        await wait_for(pilot, lambda: "Trigger word" in screen_text(app), 5, "the trigger dialog")
        await pilot.press(*"sks", "enter")
        await wait_for(pilot, lambda: all(p.read_text().startswith("sks, ") for p in photos.glob("*.txt")),
                       10, "the trigger in every caption")
        assert app.state.trigger == "sks"
        # remove the highlighted tag everywhere (the tag panel's most common tag)
        top_tag = captions.tags[0][0]
        await pilot.press("d")  # not from the image list: the tag it would remove is not in view
        await pilot.pause(0.2)
        assert all(top_tag in p.read_text().split(", ") for p in photos.glob("*.txt"))
        await pilot.press("tab", "d")
        await wait_for(pilot, lambda: all(top_tag not in p.read_text().split(", ") for p in photos.glob("*.txt")),
                       10, "the tag removal")
        await pilot.press("u")
        await wait_for(pilot, lambda: all(top_tag in p.read_text().split(", ") for p in photos.glob("*.txt")),
                       10, "the tag back")

        # the filter: no image lacks a caption
        await pilot.press("f")
        assert captions.filter_mode == "uncaptioned" and captions.shown == []

        # 3. Back keeps state: the folder step and back again find the captions step as left
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FolderScreen), 5, "Back")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "warning(s)?" in screen_text(app), 30, "the warnings dialog again")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is captions, 10, "the same captions step")
        assert captions.filter_mode == "uncaptioned" and app.state.trigger == "sks"
        await pilot.press("f", "f", "f")  # back to all

        # 4. the preset: pick pet, a bad value is caught as typed and blocks Next
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetScreen), 10, "the preset step")
        preset = app.screen
        await wait_for(pilot, lambda: len(preset.plans) == 3, 30, "the plans")
        await pilot.press("right", "right")
        assert app.state.preset == "pet"
        assert preset.query_one("#trigger").value == "sks"  # the trigger set on the captions step
        preset.query_one("#adv-rank").focus()
        await pilot.press("0")
        assert "rank" in preset.error_text and not preset.valid
        await pilot.press("ctrl+n")
        assert app.screen is preset  # blocked
        await pilot.press("backspace")
        assert preset.valid and preset.error_text == ""

        # 5. train: the run starts as its own process and is followed to the end
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the run view")
        run = app.screen
        await wait_for(pilot, lambda: run.child_pid > 0 or run.snapshot.ended, 60, "the trainer")
        trainer = run.child_pid
        await wait_for(pilot, lambda: run.snapshot.ended, 150, "the run to finish")
        # the ended trainer is collected at once, not left a zombie until the app exits
        await wait_for(pilot, lambda: not is_zombie(trainer), 15, "the trainer to be reaped")
        assert run.snapshot.status == "finished", run.snapshot.message
        assert run.snapshot.step == 6 and len(run.snapshot.smoothed) == 6
        lora = Path(run.snapshot.lora_path)
        assert lora.is_file() and lora.parent.parent == tmp_path / "runs"
        assert "<lora:" in screen_text(app)
        config = (lora.parent / "config.toml").read_text()
        assert 'preset = "pet"' in config and 'trigger = "sks"' in config


@async_test
async def test_review_opens_at_captions_and_back_goes_to_the_folder(photos: Path) -> None:
    app = build_app(photos, start="captions")
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, CaptionsScreen)
        await wait_for(pilot, lambda: app.screen.current is not None, 20, "the captions")
        await pilot.press("?")
        await wait_for(pilot, lambda: "Help: Review captions" in screen_text(app), 5, "the help")
        assert "Undo" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FolderScreen), 5, "the folder step")


def is_zombie(pid: int) -> bool:
    """The process has ended but its parent has not collected it (Linux's /proc says Z)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# run.sample: Enter opens the highlighted sample; the gallery's own title says "Enter: open"
HIDDEN = {"captions.down", "captions.up", "app.quit", "findings.up", "findings.down", "run.sample",
          "run.notes_up"}


def test_every_binding_has_an_id_a_description_and_a_footer_entry() -> None:
    from loratui.app import LoratuiApp
    from loratui.screens import captions, dialogs, findings, folder, help, model_picker, preset, run

    classes = [LoratuiApp, folder.FolderScreen, captions.CaptionsScreen, captions.CaptionEditor,
               preset.PresetScreen, run.RunScreen, help.HelpScreen, dialogs.ConfirmDialog,
               dialogs.InputDialog, dialogs.ChoiceDialog, findings.FindingsDialog,
               model_picker.ModelPickerDialog, model_picker.FilePickerDialog]
    ids = set()
    for cls in classes:
        for binding in cls.BINDINGS:
            assert binding.id and binding.description, (cls.__name__, binding)
            assert binding.id not in ids, binding.id
            ids.add(binding.id)
            # 1/2/3 on the preset step are shortcuts for ←/→, shown on the cards and in help; j/k
            # move as ↓/↑ do and ctrl+q quits as in every Textual app (Help names them): kept out
            # of the footer so that it fits 80 columns
            assert binding.show or binding.id.startswith("preset.") or binding.id in HIDDEN, binding


@async_test
async def test_auto_caption_fills_the_uncaptioned_from_the_review(photos: Path) -> None:
    (photos / "demo_05.txt").unlink()
    (photos / "demo_05.png").rename(photos / "red_fox_in_snow.png")
    app = build_app(photos, start="captions")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.current is not None, 20, "the captions")
        await pilot.press("f")  # only the uncaptioned
        assert [screen.entries[i].rel for i in screen.shown] == ["red_fox_in_snow.png"]
        await pilot.press("a")
        await wait_for(pilot, lambda: "Auto-caption 1 image" in screen_text(app), 5, "the captioner choice")
        await pilot.press("down", "down", "enter")  # filename: needs no model
        await wait_for(pilot, lambda: (photos / "red_fox_in_snow.txt").is_file(), 20, "the caption")
        # led by the trigger word the other captions share (review takes it, as the folder step does)
        assert (photos / "red_fox_in_snow.txt").read_text() == "zxq, red fox in snow"
        await pilot.press("u")  # one undoable operation
        await wait_for(pilot, lambda: not (photos / "red_fox_in_snow.txt").exists(), 10, "the undo")
