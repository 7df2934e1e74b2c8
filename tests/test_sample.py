"""`loratui sample`: the checkpoint × strength grid on a short tiny-model run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tinyrun import tiny_config

PROMPT = "a photo of zxq on a beach"
STRENGTHS = [0.0, 0.5, 1.0]


def _loratui(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loratui", *args], check=False, capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory) -> Path:
    """A finished tiny run with one step checkpoint and the final LoRA."""
    from loratui.engine.data.demo import make_demo_dataset
    from loratui.engine.train.loop import train

    base = tmp_path_factory.mktemp("sample")
    dataset = make_demo_dataset(base / "photos", count=4)
    run_dir = base / "runs" / "pet"
    # no samples or validation during training: this module times `loratui sample` alone
    config = tiny_config(dataset, base / "runs", steps=4, save_every=2, sample_every=0, validation="off")
    result = train(config, run_dir)
    assert result.status == "finished"
    return run_dir


@pytest.fixture(scope="module")
def sampled(finished_run) -> dict:
    """`loratui sample RUN_DIR` in a real process, with its --json answer."""
    proc = _loratui(
        "sample", str(finished_run), "--prompt", PROMPT, "--strengths", "0,0.5,1", "--steps", "4", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _pixels(path_or_image) -> np.ndarray:
    image = Image.open(path_or_image) if isinstance(path_or_image, (str, Path)) else path_or_image
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_grid_has_a_row_per_checkpoint_and_a_column_per_strength(finished_run, sampled):
    from loratui.engine.validate.xyz import grid_layout

    assert [Path(g) for g in sampled["grids"]] == [finished_run / "samples" / "grid-0.png"]
    cells = sampled["cells"]
    rows = ["step 2", "final"]
    assert sorted({c["checkpoint"] for c in cells}) == sorted(rows)
    assert len(cells) == len(rows) * len(STRENGTHS)
    # strength 0 is the base model: rendered once and shared by both rows
    assert len(sampled["images"]) == 1 + len(rows) * 2
    for image in sampled["images"]:
        assert Path(image).is_file() and Path(image).parent == finished_run / "samples" / "xyz"

    grid = Image.open(sampled["grids"][0])
    layout = grid_layout(rows, ["0", "0.5", "1"], 64, 64, title=PROMPT)
    assert layout.left > 0 and layout.top > 0  # room for the labels
    assert grid.size == (layout.left + 3 * 64, layout.top + 2 * 64)
    # every cell of the grid is exactly the image written for it
    pixels = _pixels(grid)
    for c in cells:
        x0, y0, x1, y1 = layout.cell_box(rows.index(c["checkpoint"]), STRENGTHS.index(c["strength"]))
        assert np.array_equal(pixels[y0:y1, x0:x1], _pixels(c["path"])), c
    card = (finished_run / "README.md").read_text()
    assert "## Checkpoints × strengths" in card and "(samples/grid-0.png)" in card


def test_strength_zero_is_the_base_model_and_strength_one_is_not(tiny_model, sampled):
    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.validate.sampling import components_pipeline, render

    comps = load_components(resolve_model("tiny"))
    pipe = components_pipeline(comps)
    seed = sampled["cells"][0]["seed"]
    base = _pixels(render(pipe, PROMPT, seed, 64, 64, steps=4))

    by_cell = {(c["checkpoint"], c["strength"]): _pixels(c["path"]) for c in sampled["cells"]}
    for row in ("step 2", "final"):
        assert np.array_equal(by_cell[(row, 0.0)], base)
        assert not np.array_equal(by_cell[(row, 1.0)], base)


def test_a_bare_lora_file_works_with_base_model_tiny(finished_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loratui.cli import app

    lora = tmp_path / "from-another-tool.safetensors"
    lora.write_bytes((finished_run / "pet.safetensors").read_bytes())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "check.png"
    result = CliRunner().invoke(
        app, ["sample", str(lora), "--base-model", "tiny", "-p", PROMPT, "--strengths", "0,1", "--steps", "2",
              "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["grids"] == [str(out)]
    assert len(answer["images"]) == 2
    for image in answer["images"]:
        assert Path(image).parent == tmp_path / "loratui-samples" / "from-another-tool" / "xyz"
    assert Image.open(out).size[0] > 2 * 64


def test_a_bare_lora_without_base_model_is_one_clear_line(finished_run, tmp_path):
    lora = tmp_path / "x.safetensors"
    lora.write_bytes((finished_run / "pet.safetensors").read_bytes())
    proc = _loratui("sample", str(lora), "--prompt", PROMPT, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: ") and "--base-model" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("kind", ["a base model", "not safetensors"])
def test_a_file_that_is_not_a_lora_is_one_clear_line(tiny_model, tmp_path, kind):
    if kind == "a base model":
        path = tiny_model / "unet" / "diffusion_pytorch_model.safetensors"
        expected = "not a LoRA"
    else:
        path = tmp_path / "notes.safetensors"
        path.write_text("these are my notes")
        expected = "not a safetensors file"
    proc = _loratui("sample", str(path), "--base-model", "tiny", "--prompt", PROMPT, cwd=tmp_path)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: ") and expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_strengths_and_checkpoint_choice(finished_run):
    from loratui.engine.errors import ConfigError
    from loratui.engine.validate.xyz import parse_strengths, plan_sample

    assert parse_strengths(None) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert parse_strengths("1, 0.5,1,-0") == [1.0, 0.5, 0.0]
    with pytest.raises(ConfigError):
        parse_strengths("0,strong")
    plan = plan_sample(finished_run, which="last")
    assert [c.label for c in plan.checkpoints] == ["final"]
    # no --prompt: the preset's prompt around the run's trigger word
    assert plan.prompts == ["a photo of zxq sitting on a beach"]
    assert (plan.width, plan.seed) == (64, 42)
    assert [c.label for c in plan_sample(finished_run).checkpoints] == ["step 2", "final"]


def test_samples_decode_in_fp32_even_under_fp16_autocast(tiny_model):
    """A run samples under autocast; SD's VAEs (SDXL's above all) overflow in fp16 and the
    user got black images. Here a VAE made to overflow in fp16 (its post-quant conv ×1e5) still
    gives the fp32 image."""
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from loratui.engine.validate.sampling import render

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        pipe.vae.post_quant_conv.weight.mul_(1e5)
    want = np.asarray(render(pipe, "zxq, a red ball", 7, 64, 64, steps=2), dtype=np.int16)
    with torch.autocast("cpu", dtype=torch.float16):
        got = np.asarray(render(pipe, "zxq, a red ball", 7, 64, 64, steps=2), dtype=np.int16)
        latents = torch.randn(1, 4, 8, 8)
        assert not torch.isfinite(pipe.vae.decode(latents).sample).all()  # what the pipeline's own decode gave
    assert got.std() > 1 and np.abs(got - want).max() <= 8  # the fp32 image, up to the UNet's fp16 rounding
