"""The preset step's Advanced options (issues 12, 13, 15): each one reaches the run's config,
options that depend on another show up only when they apply, a bad value is named under its
field, ctrl+r queues the run instead of starting it, and ctrl+t sends a test notification."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input
from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app
from loratui.engine.runs.queue import RunQueue
from loratui.screens.model_picker import FolderPickerDialog, LoraPickerDialog
from loratui.screens.preset import PresetScreen
from loratui.widgets.choice import Choice


def shown(app, name: str) -> bool:
    return app.screen.query_one(f"#adv-{name}").display and app.screen.query_one(f"#label-{name}").display


def note(app, name: str) -> str:
    widget = app.screen.query_one(f"#note-{name}")
    return str(widget.render()) if widget.has_class("-shown") else ""


async def choose(pilot, name: str, value: str) -> None:
    """Step the choice with → until it shows ``value`` (the keyboard, as a user would)."""
    choice = pilot.app.screen.query_one(f"#adv-{name}", Choice)
    choice.focus()
    for _ in range(len(choice.options)):
        if choice.value == value:
            return
        await pilot.press("right")
    assert choice.value == value, (name, choice.value)


async def type_into(pilot, name: str, text: str) -> None:
    field = pilot.app.screen.query_one(f"#adv-{name}", Input)
    field.focus()
    field.value = text
    await pilot.pause()


def test_every_help_line_fits_80_columns() -> None:
    """The line under the form says what the focused field does in one row of an 80-column
    terminal (78 inside its padding); a longer one ended in '…' where it named ctrl+o."""
    from rich.cells import cell_len

    from loratui.screens.advanced import OPTIONS
    from loratui.screens.preset import GENERAL_HELP, MODEL_HELP

    lines = [GENERAL_HELP, MODEL_HELP] + [f"{o.label}: {o.help}" for o in OPTIONS.values()]
    assert not [line for line in lines if cell_len(line) > 78]


@async_test
async def test_every_advanced_option_reaches_the_queued_config(photos: Path, tmp_path: Path, monkeypatch,
                                                                webhook) -> None:
    monkeypatch.setenv("LORATUI_STATE_DIR", str(tmp_path / "state"))  # the queue lives here
    url, received = webhook
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "notify").write_text(url + "\n")  # the user default notification URL
    monkeypatch.setenv("LORATUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LORATUI_NOTIFY", raising=False)
    previous = tmp_path / "runs" / "previous"  # a run folder with its LoRA, to start from
    previous.mkdir(parents=True)
    (previous / "previous.safetensors").write_bytes(b"")
    (tmp_path / "runs" / "empty").mkdir()
    app = build_app(photos, start="preset", output_dir=tmp_path / "runs",
                    defaults=dict(base_model="tiny", resolution=64, steps=6))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, PresetScreen)
        # (the cards' measurement, a model built in a thread, slows every key while it runs)
        await wait_for(pilot, lambda: len(screen.plans) == 3 and len(screen.needs) == 3, 60, "the plans")
        screen.query_one("#advanced").collapsed = False
        await pilot.pause()

        # dependent options: hidden until the choice they belong to is made
        assert not any(shown(app, n) for n in ("conv_rank", "conv_alpha", "d_coef", "huber_c", "huber_schedule",
                                               "text_encoder_lr", "multires_noise_discount"))
        assert "LoRA rank 16" in str(screen.query_one("#plan").render())
        await pilot.press("3")  # pet: its own rank, named at once
        assert "LoRA rank 8," in str(screen.query_one("#plan").render())
        await pilot.press("1")
        await choose(pilot, "network", "locon")
        assert shown(app, "conv_rank") and shown(app, "conv_alpha")
        await pilot.press("backspace")  # back to the default, lora
        assert not shown(app, "conv_rank") and "network" not in app.state.overrides
        await choose(pilot, "network", "locon")
        await choose(pilot, "optimizer", "prodigy")
        await choose(pilot, "loss_type", "huber")
        await choose(pilot, "train_text_encoder", "on")
        assert all(shown(app, n) for n in ("conv_rank", "d_coef", "huber_c", "huber_schedule", "text_encoder_lr"))
        plan = str(screen.query_one("#plan").render())
        assert "LoCon" in plan and "optimizer Prodigy" in plan and "lr 1 " in plan  # the derivation names them

        # an empty field shows the value the run will use
        assert screen.query_one("#adv-conv_alpha", Input).placeholder == "default: 16"
        assert screen.query_one("#adv-unet_lr", Input).placeholder == "default: 1"  # Prodigy's lr

        # a bad value: named in one line under its field, and Train and Queue refuse
        await type_into(pilot, "conv_rank", "0")
        assert note(app, "conv_rank") == "must be greater than or equal to 1"
        assert screen.query_one("#adv-conv_rank").has_class("-invalid") and not screen.valid
        await pilot.press("ctrl+r")
        assert not RunQueue().entries()
        screen.query_one("#adv-network").focus()
        await pilot.press("backspace")  # lora: conv rank no longer applies, hidden and out of the config
        assert screen.valid and not shown(app, "conv_rank") and screen.config.conv_rank is None
        await choose(pilot, "network", "locon")  # back, with the value as it was typed
        assert not screen.valid and note(app, "conv_rank") == "must be greater than or equal to 1"
        await type_into(pilot, "conv_rank", "4")
        assert note(app, "conv_rank") == "" and screen.valid
        await type_into(pilot, "lr", "fast")
        assert "lr = 'fast'" in screen.error_text and note(app, "lr").startswith("must be a valid number")
        await type_into(pilot, "lr", "")

        for name, text in (("conv_alpha", "2"), ("d_coef", "2"), ("unet_lr", "0.0002"),
                           ("text_encoder_lr", "5e-5"), ("huber_c", "0.2"), ("multires_noise_iterations", "6")):
            await type_into(pilot, name, text)

        # start from: a path to nothing is named under the field (RunConfig takes any text); ctrl+o
        # picks a run folder that holds a LoRA (one that holds none is refused)
        await type_into(pilot, "init_lora", str(tmp_path / "nope.safetensors"))
        assert "no such LoRA file or run folder" in note(app, "init_lora") and not screen.valid
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, LoraPickerDialog), 5, "the LoRA picker")
        await wait_for(pilot, lambda: "previous" in screen_text(app), 10, "the run folders")
        await pilot.press("down", "u")  # empty/
        assert "holds no LoRA" in screen_text(app) and isinstance(app.screen, LoraPickerDialog)
        await pilot.press("down")  # previous/: what was said about empty/ goes with the cursor
        await wait_for(pilot, lambda: "holds no LoRA" not in screen_text(app), 5, "the note cleared")
        await pilot.press("u")
        await wait_for(pilot, lambda: app.screen is screen, 5, "back on the preset step")
        assert screen.query_one("#adv-init_lora", Input).value == str(previous) and note(app, "init_lora") == ""
        assert shown(app, "multires_noise_discount")
        await type_into(pilot, "multires_noise_discount", "0.4")
        await choose(pilot, "huber_schedule", "constant")
        await choose(pilot, "debiased_estimation", "on")
        await choose(pilot, "train_layers", "attention-ff")
        assert screen.valid, screen.error_text

        # class images: a folder that is not there is named; their prompt and weight come with them
        assert not shown(app, "class_prompt") and not shown(app, "ema_decay")
        await type_into(pilot, "reg_folder", str(tmp_path / "cats"))
        assert note(app, "reg_folder").endswith("no such folder of class images") and not screen.valid
        (tmp_path / "dogs").mkdir()
        # ctrl+o there: a folder picker (the footer says so), opened near what is typed
        await wait_for(pilot, lambda: "^o Pick " in screen_text(app).splitlines()[-1], 5, "the footer's Pick")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, FolderPickerDialog), 5, "the folder picker")
        tree = app.screen.query_one("#files")
        await wait_for(pilot, lambda: any(n.data.path.name == "dogs" for n in tree.root.children), 10, "dogs/")
        assert tree.path == tmp_path and "Pick the folder of class images" in screen_text(app)
        tree.move_cursor(next(n for n in tree.root.children if n.data.path.name == "dogs"))
        await pilot.press("u")
        await wait_for(pilot, lambda: app.screen is screen, 5, "back on the preset step")
        assert screen.query_one("#adv-reg_folder", Input).value == str(tmp_path / "dogs")
        screen.query_one("#base_model").focus()  # elsewhere ctrl+o lists the models
        await wait_for(pilot, lambda: "^o Models " in screen_text(app).splitlines()[-1], 5, "the footer's Models")
        assert shown(app, "class_prompt") and shown(app, "prior_loss_weight") and screen.valid
        await type_into(pilot, "class_prompt", "a photo of a dog")
        await choose(pilot, "masked_loss", "on")
        await choose(pilot, "ema", "keep")
        assert shown(app, "ema_decay")
        await type_into(pilot, "ema_decay", "0.99")

        # the scheduler, caption handling, samples, precision and noise options
        await choose(pilot, "lr_scheduler", "constant_with_warmup")
        assert screen.query_one("#adv-warmup_steps", Input).placeholder == "default: 5% of the run"
        await type_into(pilot, "warmup_steps", "2")
        assert not shown(app, "keep_tokens")
        await choose(pilot, "shuffle_tags", "on")
        assert shown(app, "keep_tokens")
        await type_into(pilot, "keep_tokens", "2")
        await type_into(pilot, "caption_dropout", "0.1")
        await type_into(pilot, "sample_prompts", "zxq on a beach | zxq in snow")
        await type_into(pilot, "noise_offset", "0.05")
        await choose(pilot, "gradient_checkpointing", "on")

        # the notify field shows the user's default (not its token); ctrl+t sends a test through the
        # engine's notifier, and it reaches the server
        assert screen.query_one("#adv-notify", Input).placeholder == "default: json://… (your default)"
        screen.query_one("#adv-notify").focus()
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: note(app, "notify").startswith("✓"), 20, "the test notification")
        [message] = received
        assert message["title"] == "loratui: test notification" and "photos" in message["message"]
        await type_into(pilot, "notify", url + "?run=1")  # a URL of its own for this run
        assert note(app, "notify") == ""

        # ctrl+r: queued instead of started; the queue holds the config as set here
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, PresetScreen)
        [entry] = RunQueue().entries()
        assert "loratui queue run" in screen.queued and str(RunQueue().path) in screen.queued
        config = entry.config
        assert {k: config[k] for k in ("network", "conv_rank", "conv_alpha", "optimizer", "d_coef", "unet_lr",
                                       "train_text_encoder", "text_encoder_lr", "loss_type", "huber_c",
                                       "huber_schedule", "debiased_estimation", "multires_noise_iterations",
                                       "multires_noise_discount", "train_layers", "init_lora", "steps",
                                       "reg_folder", "class_prompt", "masked_loss", "ema", "ema_decay",
                                       "lr_scheduler", "warmup_steps", "shuffle_tags", "keep_tokens",
                                       "caption_dropout", "sample_prompts", "noise_offset",
                                       "gradient_checkpointing")} == dict(
            network="locon", conv_rank=4, conv_alpha=2.0, optimizer="prodigy", d_coef=2.0, unet_lr=0.0002,
            train_text_encoder=True, text_encoder_lr=5e-5, loss_type="huber", huber_c=0.2,
            huber_schedule="constant", debiased_estimation=True, multires_noise_iterations=6,
            multires_noise_discount=0.4, train_layers="attention-ff", init_lora=str(previous),
            steps=6, reg_folder=str(tmp_path / "dogs"), class_prompt="a photo of a dog", masked_loss=True,
            ema="keep", ema_decay=0.99, lr_scheduler="constant_with_warmup", warmup_steps=2, shuffle_tags=True,
            keep_tokens=2, caption_dropout=0.1, sample_prompts=["zxq on a beach", "zxq in snow"], noise_offset=0.05,
            gradient_checkpointing=True)
        # the notification URL is kept apart (it may hold a token), not in the listed config
        assert entry.notify == url + "?run=1" and "notify" not in entry.public()["config"]

        screen.query_one("#adv-network", Choice).focus()
        await pilot.press("backspace")
        assert "◀ lora ▶  default" in screen_text(app)  # (scrolled into view, at 80x24)
