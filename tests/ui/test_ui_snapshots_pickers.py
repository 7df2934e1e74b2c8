"""Snapshots at 80×24 of the preset step's pickers (ctrl+o): the models found on the machine,
the file picker behind "Browse", the LoRA to start from and a folder. What they list depends on
the machine, so the machine is made up here: HOME, the Hugging Face cache and the current folder
point into the fixed snapshot root, which holds a few fake models with fixed names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_ui_snapshots import SIZE, fixed_root, settings
from ui_helpers import settle, wait_for

from loratui.app import build_app

HUB_REPO = "models--stabilityai--stable-diffusion-xl-base-1.0"
ROOT = Path("/tmp/loratui-pickers")  # fixed: the trees show it


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A cache of their own for these tests: the cards behind the dialogs time the run from the
    speeds and footprints a cache has recorded, so it starts with none of those; only the
    session's tiny model (and its tokenizer) is copied in, not built again."""
    cache = tmp_path_factory.mktemp("picker-cache")
    for folder in (tiny_model, *tiny_model.parent.glob("clip-*-tokenizer-*")):
        shutil.copytree(folder, cache / folder.name)
    return cache


@pytest.fixture
def machine(cache: Path, monkeypatch: pytest.MonkeyPatch, demo_dataset: Path) -> Path:
    """The snapshot root as the whole machine: models beside the dataset, an AUTOMATIC1111 and
    a ComfyUI install in a made-up home, one diffusers model in a made-up hub cache, and a run
    folder with LoRAs. Home and cache are hidden folders, so the file picker's tree (which
    leaves hidden entries out) shows only what a user would have beside the dataset."""
    fixed = fixed_root(ROOT, monkeypatch, demo_dataset)
    models = fixed / "models"
    (models / "sdxl-base").mkdir(parents=True)
    (models / "sdxl-base" / "model_index.json").write_text("{}")
    (models / "v1-5-pruned-emaonly.safetensors").write_bytes(b"0" * 64)
    home = fixed / ".home"
    a1111 = home / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    comfy = home / "ComfyUI" / "models" / "checkpoints" / "sdxl"
    for folder, name in ((a1111, "dreamshaper_8.safetensors"), (comfy, "juggernautXL.safetensors")):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"0" * 64)
    snapshot = fixed / ".hf" / "hub" / HUB_REPO / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    runs = fixed / "loratui-runs" / "demo"
    runs.mkdir(parents=True)
    for name in ("demo.safetensors", "demo-step000020.safetensors"):
        (runs / name).write_bytes(b"0" * 64)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(fixed / ".hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # the cards behind the dialogs time the run from the CPU and its recorded speed: the same
    # ones on every machine (as the preset step's own snapshot)
    from loratui.engine.planning.preset_plan import Hardware
    from loratui.screens import preset

    monkeypatch.setenv("LORATUI_CACHE_DIR", str(cache))
    monkeypatch.setattr(preset, "detect_hardware", lambda: Hardware(threads=2))
    monkeypatch.chdir(fixed)
    yield fixed
    monkeypatch.undo()  # out of the folder before it goes
    shutil.rmtree(ROOT, ignore_errors=True)


async def open_preset(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: len(app.screen.plans) == 3 and len(app.screen.needs) == 3, 60)
    await settle(pilot)


async def tree_loaded(pilot, names: int) -> None:
    """Wait for the picker's tree to list ``names`` entries (it loads them in a worker)."""
    tree = pilot.app.screen.query_one("#files")
    await wait_for(pilot, lambda: len(tree.root.children) == names, 10)
    await pilot.pause(0.3)


async def pick_for(pilot, field: str, dialog: str, names: int) -> None:
    """ctrl+o on the Advanced field ``field``: its picker ``dialog`` open, ``names`` top entries listed."""
    app = pilot.app
    await open_preset(pilot)
    app.screen.query_one("#advanced").collapsed = False
    target = app.screen.query_one(f"#adv-{field}")
    # the screen scrolls the focused field into view from where the layout has put it: focused
    # before the opened Advanced section is laid out (a loaded machine), it scrolls to a place
    # the snapshot does not show
    await wait_for(pilot, lambda: target.size.height > 0, 10, "the Advanced section laid out")
    target.focus()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await wait_for(pilot, lambda: target.region.height > 0
                   and app.screen.region.contains_region(target.region), 10, f"#adv-{field} in view")
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: type(app.screen).__name__ == dialog, 10)
    await tree_loaded(pilot, names)


async def models_listed(pilot) -> None:
    """ctrl+o on the preset step: the models picker open, its search of the usual places done."""
    app = pilot.app
    await open_preset(pilot)
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: "found" in str(app.screen.query_one("#status").render()), 10)


def test_model_picker(snap_compare, machine: Path) -> None:
    app = build_app(machine / "photos", start="preset", defaults=settings())

    async def ready(pilot) -> None:
        await models_listed(pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_file_picker(snap_compare, machine: Path) -> None:
    app = build_app(machine / "photos", start="preset", defaults=settings())

    async def ready(pilot) -> None:
        await models_listed(pilot)
        await pilot.press("home", "enter")  # Browse…: the dataset's parent folder
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FilePickerDialog", 10)
        await tree_loaded(pilot, 4)  # loratui-runs, models, photos, state
        await pilot.press("down", "down", "enter")  # models/, opened
        tree = app.screen.query_one("#files")
        await wait_for(pilot, lambda: len(tree.cursor_node.children) == 2, 10)
        await pilot.press("down")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_lora_picker(snap_compare, machine: Path) -> None:
    app = build_app(machine / "photos", start="preset", defaults=settings())

    async def ready(pilot) -> None:
        await pick_for(pilot, "init_lora", "LoraPickerDialog", 1)  # demo/
        await pilot.press("down", "enter")
        tree = app.screen.query_one("#files")
        await wait_for(pilot, lambda: len(tree.cursor_node.children) == 2, 10)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_folder_picker(snap_compare, machine: Path) -> None:
    app = build_app(machine / "photos", start="preset", defaults=settings())

    async def ready(pilot) -> None:
        # class images: a folder beside the dataset; loratui-runs, models, photos, state: folders only
        await pick_for(pilot, "reg_folder", "FolderPickerDialog", 4)
        await pilot.press("down", "down", "enter")  # models/: its diffusers folder, not its files
        tree = app.screen.query_one("#files")
        await wait_for(pilot, lambda: len(tree.cursor_node.children) == 1, 10)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
