"""Regularisation (class) images and the masked loss (issue 12, items 3 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyrun import tiny_config


def _reg_folder(root: Path, count: int = 3, caption: str | None = None) -> Path:
    """``count`` class images (other shapes than the demo subject), captioned or not."""
    from PIL import Image, ImageDraw

    folder = root / "class"
    folder.mkdir(parents=True)
    for n in range(count):
        im = Image.new("RGB", (96, 96), (40 * n, 120, 200))
        ImageDraw.Draw(im).rectangle((20 + n, 20, 70, 70 - n), fill=(230, 220, 30))
        im.save(folder / f"c{n}.png")
        if caption:
            (folder / f"c{n}.txt").write_text(caption)
    return folder


def _mask(image: Path, box: tuple[int, int, int, int] | None, size: tuple[int, int] | None = None) -> Path:
    """``NAME.mask.png`` beside ``image``: white inside ``box`` (None: all black)."""
    from PIL import Image, ImageDraw

    with Image.open(image) as im:
        mask = Image.new("L", size or im.size, 0)
    if box:
        ImageDraw.Draw(mask).rectangle(box, fill=255)
    path = image.with_name(image.stem + ".mask.png")
    mask.save(path)
    return path


# -- planning --------------------------------------------------------------------------------


def test_class_images_fill_each_epoch_as_kohya_does(small_dataset, tmp_path):
    from loratui.engine.planning.run_plan import plan_run

    reg = _reg_folder(tmp_path, count=3)
    plan = plan_run(tiny_config(small_dataset, tmp_path / "runs", steps=None, repeats=5, epochs=2,
                                reg_folder=str(reg), class_prompt="a photo of a shape"))
    train_views = sum(i.repeats for i in plan.train_items)
    assert train_views == 4 * 5
    # as many class views per epoch as training views, spread over the class images evenly
    assert sum(i.repeats for i in plan.reg_items) == train_views
    assert sorted(i.repeats for i in plan.reg_items) == [6, 7, 7]
    assert all(plan.caption_for(i) == "a photo of a shape" for i in plan.reg_items)
    # each epoch twice as long: 40 views at batch 2 = 20 steps (21: two buckets with a short batch each)
    assert plan.batches.batches_per_epoch in (20, 21)
    assert plan.schedule.total_steps == 2 * plan.batches.batches_per_epoch
    assert "regularisation" in plan.schedule.explain
    # a batch never mixes buckets, but does mix the two kinds
    kinds = {tuple(sorted({plan.items[i].reg for i in b})) for b in plan.batches.epoch_batches(0)}
    assert (False, True) in kinds


def test_more_class_images_than_views_use_a_seeded_choice(small_dataset, tmp_path):
    from loratui.engine.planning.run_plan import plan_run

    reg = _reg_folder(tmp_path, count=6, caption="a shape")
    plan = plan_run(tiny_config(small_dataset, tmp_path / "runs", steps=8, repeats=1, reg_folder=str(reg)))
    assert sum(i.repeats for i in plan.reg_items) == 4 and len(plan.reg_items) == 4
    assert any("4 of 6 images are used" in w for w in plan.warnings)
    assert plan.schedule.total_steps == 8  # --steps stays the total


def test_class_images_without_a_caption_are_refused_with_the_fix(small_dataset, tmp_path):
    from loratui.engine.errors import DatasetError
    from loratui.engine.planning.run_plan import plan_run

    reg = _reg_folder(tmp_path, count=2)
    with pytest.raises(DatasetError) as err:
        plan_run(tiny_config(small_dataset, tmp_path / "runs", reg_folder=str(reg)))
    assert "c0.png" in err.value.message and "--class-prompt" in err.value.hint
    with pytest.raises(DatasetError, match="no such folder"):
        plan_run(tiny_config(small_dataset, tmp_path / "runs", reg_folder=str(tmp_path / "nope")))


def test_kohya_yaml_keys_for_class_images_and_masks(tmp_path):
    from loratui.engine.config import build_config, load_config_file

    path = tmp_path / "run.yaml"
    path.write_text("train_data_dir: ./photos\nreg_data_dir: ./class\nprior_loss_weight: 0.5\nmasked_loss: true\n")
    cfg = build_config(None, file_values=load_config_file(path))
    assert (cfg.reg_folder, cfg.prior_loss_weight, cfg.masked_loss) == ("./class", 0.5, True)


def test_masks_are_found_skipped_as_images_and_checked_for_size(small_dataset, tmp_path):
    from loratui.engine.planning.run_plan import plan_run

    images = sorted(small_dataset.glob("*.png"))
    _mask(images[0], (10, 10, 40, 40))
    _mask(images[1], (0, 0, 5, 5), size=(17, 17))  # not the image's size: that image is not trained
    plan = plan_run(tiny_config(small_dataset, tmp_path / "runs"))
    assert plan.masked  # a .mask.png turns it on
    rels = {i.record.rel for i in plan.items}
    assert not any(r.endswith(".mask.png") for r in rels)  # never trained on as an image
    assert images[1].name not in rels
    assert any(images[1].name in w and "must be the size of its image" in w for w in plan.warnings)
    assert [i.record.rel for i in plan.items if i.mask] == [images[0].name]
    off = plan_run(tiny_config(small_dataset, tmp_path / "runs", masked_loss=False))
    assert not off.masked and len(off.items) == 4


# -- training ---------------------------------------------------------------------------------


def test_a_run_with_class_images_reports_both_losses(small_dataset, tmp_path):
    from loratui.engine.train.loop import train
    from safetensors import safe_open

    reg = _reg_folder(tmp_path, count=2, caption="a shape")
    cfg = tiny_config(small_dataset, tmp_path / "runs", steps=6, save_every=0, repeats=1,
                      reg_folder=str(reg), prior_loss_weight=0.5, validation="off", sample_every=0)
    run_dir = tmp_path / "runs" / "reg"
    result = train(cfg, run_dir)
    steps = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    steps = [e for e in steps if e["event"] == "step"]
    assert len(steps) == 6
    assert any(e["prior_loss"] is not None for e in steps) and any(e["instance_loss"] is not None for e in steps)
    for e in steps:  # the optimised loss is the mix, the class images' share at half weight
        inst, prior = e["instance_loss"], e["prior_loss"]
        if inst is not None and prior is not None:
            assert min(inst, prior * 0.5) - 1e-6 <= e["loss"] <= max(inst, prior * 0.5) + 1e-6
    with safe_open(str(result.lora_path), "pt") as f:
        meta = f.metadata()
    assert meta["ss_num_reg_images"] == "4" and meta["ss_prior_loss_weight"] == "0.5"
    tags = json.loads(meta["ss_tag_frequency"])
    assert not any("shape" in t for counts in tags.values() for t in counts)  # class captions are not taught
    assert "class images from" in (run_dir / "README.md").read_text()
    identity = json.loads((run_dir / "dataset.json").read_text())
    assert set(identity["reg"]["files"]) == {"c0.png", "c1.png"}


def test_a_class_image_never_gets_the_trigger(small_dataset, tmp_path):
    from loratui.engine.planning.run_plan import plan_run
    from loratui.engine.train.step import draw_micro

    reg = _reg_folder(tmp_path, count=2, caption="a shape")
    cfg = tiny_config(small_dataset, tmp_path / "runs", steps=8, repeats=1, reg_folder=str(reg), batch_size=1)
    plan = plan_run(cfg)
    seen = {}
    for micro in range(plan.batches.batches_per_epoch):
        batch = draw_micro(plan, cfg, micro, lambda idx, gen: __import__("torch").zeros(len(idx), 4, 8, 8), 1.0, 1000)
        seen[plan.items[batch.indices[0]].reg] = (batch.captions[0], float(batch.weights[0]))
    assert seen[True] == ("a shape", 1.0) and seen[False][0].startswith("zxq")


def test_the_masked_loss_has_no_gradient_outside_the_mask(small_dataset, tmp_path):
    """The loss reaches the UNet's prediction only inside the mask: a gradient test on the
    real tiny model."""
    import torch

    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.planning.run_plan import plan_run
    from loratui.engine.train.denoiser import Denoiser
    from loratui.engine.train.conditioning import TextConditioner
    from loratui.engine.train.step import draw_micro, sample_losses
    from loratui.engine.data.masks import load_masks
    from loratui.engine.events import EventBus

    for image in sorted(small_dataset.glob("*.png")):
        _mask(image, (0, 0, 63, 31))  # the top half of each 64 px crop... of the original image
    cfg = tiny_config(small_dataset, tmp_path / "runs", batch_size=2)
    plan = plan_run(cfg)
    masks = load_masks(plan, EventBus())
    comps = load_components(resolve_model("tiny"))
    latent_h = plan.items[0].bucket[1] // 8
    batch = draw_micro(plan, cfg, 0, lambda idx, gen: torch.randn(len(idx), 4, latent_h, latent_h, generator=gen),
                       1.0, 1000, masks)
    assert batch.masks is not None and 0 < int((batch.masks > 0).sum()) < batch.masks.numel()
    condition = TextConditioner(comps.family, comps.text_encoders, comps.tokenizers, torch.device("cpu"), False)
    model = Denoiser(comps.family, comps.unet, condition, comps.noise_scheduler)
    kept = {}
    def keep(module, args, out) -> None:
        pred = out[0] if isinstance(out, tuple) else out.sample
        pred.retain_grad()
        kept["pred"] = pred

    comps.unet.register_forward_hook(keep)
    losses = sample_losses(model, batch, [0, 1], cfg, torch.device("cpu"), torch.float32)
    losses.sum().backward()
    grad = kept["pred"].grad
    outside = (batch.masks == 0).expand_as(grad)
    assert grad[outside].abs().max() == 0
    assert grad[~outside].abs().max() > 0
    # an image with no mask is trained whole; with masks off the loss is the plain mean
    unmasked = tiny_config(small_dataset, tmp_path / "runs", batch_size=2, masked_loss=False)
    assert draw_micro(plan_run(unmasked), unmasked, 0, lambda idx, gen: torch.zeros(len(idx), 4, 8, 8),
                      1.0, 1000).masks is None


def test_an_empty_mask_takes_its_image_out_of_the_run(small_dataset, tmp_path):
    from loratui.engine.train.loop import train

    images = sorted(small_dataset.glob("*.png"))
    _mask(images[0], None)  # all black
    _mask(images[1], (0, 0, 80, 80))
    cfg = tiny_config(small_dataset, tmp_path / "runs", steps=3, save_every=0, validation="off", sample_every=0)
    run_dir = tmp_path / "runs" / "masked"
    result = train(cfg, run_dir)
    assert result.status == "finished"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    warned = [e["message"] for e in events if e["event"] == "warning"]
    assert any(images[0].name in w and "empty" in w for w in warned)
    assert "1 of 3 images have a mask" in (run_dir / "README.md").read_text()


def test_check_reports_bad_and_orphan_masks(small_dataset):
    from loratui.engine.data.lint import check

    images = sorted(small_dataset.glob("*.png"))
    _mask(images[0], (5, 5, 30, 30))  # fine
    _mask(images[1], None)  # empty
    _mask(images[2], (0, 0, 4, 4), size=(20, 10))  # the wrong size
    orphan = small_dataset / "gone.mask.png"
    _mask(images[3], (0, 0, 4, 4)).rename(orphan)
    report = check(small_dataset, pixels=False)
    found = {(f.path, f.code) for f in report.findings if "mask" in f.code}
    assert found == {(images[1].stem + ".mask.png", "bad_mask"), (images[2].stem + ".mask.png", "bad_mask"),
                     ("gone.mask.png", "orphan_mask")}
    messages = " ".join(f.message for f in report.findings)
    assert "empty" in messages and "must be the size of its image" in messages
    assert report.images == 4  # masks are not counted (or trained) as images


def test_check_covers_the_class_images_too(small_dataset, tmp_path):
    import typer
    from typer.testing import CliRunner

    from loratui import dataset_commands

    app = typer.Typer()
    dataset_commands.register(app)
    reg = _reg_folder(tmp_path, count=3)
    args = ["check", str(small_dataset), "--resolution", "64", "--reg-folder", str(reg), "--json"]
    fine = CliRunner().invoke(app, [*args, "--class-prompt", "a shape"])
    data = json.loads(fine.stdout)
    assert "reg" in data and data["reg"]["images"] == 3
    # no caption is fine with a class prompt, and a preset's image count is not the class folder's concern
    assert {f["code"] for f in data["reg"]["findings"]} <= {"near_duplicate", "duplicate"}
    without = json.loads(CliRunner().invoke(app, args).stdout)
    assert {f["code"] for f in without["reg"]["findings"]} >= {"missing_caption"}
    (reg / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a class image that cannot be read
    broken = CliRunner().invoke(app, [*args, "--class-prompt", "a shape"])
    assert broken.exit_code == 1
    assert any(f["path"] == "broken.png" for f in json.loads(broken.stdout)["reg"]["findings"])
    human = CliRunner().invoke(app, [a for a in args if a != "--json"] + ["--class-prompt", "a shape"])
    assert "regularisation images" in human.stdout and "broken.png" in human.stdout
