"""The base model field says what the model is, or what is wrong with it, as it is typed, and
offers the models on this machine (issue 13, defect 8)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, OptionList
from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app
from loratui.screens.model_picker import ModelPickerDialog
from loratui.screens.preset import PresetScreen


def check_line(app) -> str:
    return str(app.screen.query_one("#model-check").render())


@async_test
async def test_the_field_checks_the_model_as_it_is_typed(photos: Path, tmp_path: Path, tiny_model) -> None:
    from safetensors.torch import save_file
    import torch

    lora = tmp_path / "my_lora.safetensors"  # a LoRA, not a base model
    save_file({"lora_unet_down.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    # (a hub id is checked in test_discover: planning a full-size model here would take a while)
    app = build_app(photos, start="preset", output_dir=tmp_path / "runs",
                    defaults=dict(base_model="tiny", resolution=64, steps=6))
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, PresetScreen)
        field = app.screen.query_one("#base_model", Input)
        assert field.placeholder.startswith("default: ")  # not a grey value that looks typed
        await wait_for(pilot, lambda: "SD-1.5 · built-in tiny model" in check_line(app), 10, "the first check")
        for value, expected in ((str(tmp_path / "nope.safetensors"), "no such model file or folder"),
                                (str(lora), "no Stable Diffusion UNet in this file"),
                                (str(tiny_model), "SD-1.5 · diffusers folder")):
            field.value = value
            await wait_for(pilot, lambda: expected in check_line(app), 10, expected)
        assert "✓" in check_line(app)
        # a hub id not downloaded, offline (as the tests run): why it cannot train is on screen,
        # not past the line's end after the id the field already shows
        field.value = "someone/not-here"
        region = app.screen.query_one("#model-check").region
        await wait_for(pilot, lambda: screen_text(app).splitlines()[region.y].rstrip().endswith(
            "✗ not downloaded, and HF_HUB_OFFLINE is set"), 10, "the offline hub id's reason")


@async_test
async def test_ctrl_o_offers_the_models_found_and_fills_the_field(photos: Path, tmp_path: Path, tiny_model,
                                                                 monkeypatch) -> None:
    models = photos.parent / "models"  # beside the dataset
    models.mkdir()
    (models / "my-sd15").symlink_to(tiny_model, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    app = build_app(photos, start="preset", output_dir=tmp_path / "runs",
                    defaults=dict(base_model="tiny", resolution=64, steps=6))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerDialog), 5, "the picker")
        dialog = app.screen
        await wait_for(pilot, lambda: "my-sd15" in screen_text(app), 10, "the found model")
        assert "models/ beside the dataset" in screen_text(app)
        options = dialog.query_one(OptionList)
        options.highlighted = next(n for n, o in enumerate(options.options) if "my-sd15" in str(o.prompt))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetScreen), 5, "back on the preset step")
        assert app.state.base_model == str(models / "my-sd15")
        await wait_for(pilot, lambda: "SD-1.5 · diffusers folder" in check_line(app), 10, "the check")


@async_test
async def test_the_field_shows_the_model_the_folder_step_chose_after_going_back(tmp_path: Path,
                                                                                photos: Path) -> None:
    """The folder step takes the tiny model for the demo dataset, and lets it go for another
    folder; the preset step, made once and kept, must show the model the run will use, not the
    one it was first shown with (it showed `tiny` and would have trained the default model)."""
    from loratui.engine.data.demo import make_demo_dataset
    from loratui.screens.captions import CaptionsScreen
    from loratui.screens.findings import FindingsDialog
    from loratui.screens.folder import FolderScreen

    demo = make_demo_dataset(tmp_path / "demo", count=8)
    app = build_app(demo, output_dir=tmp_path / "runs", defaults=dict(resolution=64, steps=6))

    async def to_preset(pilot, folder: Path) -> Input:
        screen = app.screen
        assert isinstance(screen, FolderScreen)
        screen.look_at(folder)
        await wait_for(pilot, lambda: screen.summary is not None and screen.summary.folder == folder, 30, "summary")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, (FindingsDialog, CaptionsScreen)), 30, "the check")
        if isinstance(app.screen, FindingsDialog):  # warnings only (few images): accepted
            await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CaptionsScreen), 10, "the captions step")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetScreen), 10, "the preset step")
        await pilot.pause(0.1)
        return app.screen.query_one("#base_model", Input)

    async with app.run_test(size=(80, 24)) as pilot:
        field = await to_preset(pilot, demo)
        assert app.state.base_model == "tiny" and field.value == "tiny"
        await pilot.press("escape")  # back to the captions, back to the folder: another one
        await wait_for(pilot, lambda: isinstance(app.screen, CaptionsScreen), 10, "the captions step")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FolderScreen), 10, "the folder step")
        field = await to_preset(pilot, photos)
        assert app.state.base_model == "" and field.value == "", field.value  # the default model, shown as such
        await wait_for(pilot, lambda: "tiny" not in check_line(app), 10, "the model's check")


@async_test
async def test_review_takes_the_captions_trigger_as_the_folder_step_does(photos: Path, tmp_path: Path) -> None:
    """`loratui review FOLDER` skips the folder step, which takes the captions' shared first tag
    as the trigger word (as `loratui train` does): the run trained without one."""
    app = build_app(photos, start="captions", output_dir=tmp_path / "runs", defaults=dict(resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.trigger == "zxq", 20, "the trigger from the captions")
        assert app.state.build_config().trigger == "zxq"  # what the run trains with (the preset field shows it)
