"""Validation and samples batched (the same figures and images as one at a time), and the CPU
schedule that keeps sample passes within their share of a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def tiny():
    from loratui.engine.families.models import load_components, resolve_model

    return load_components(resolve_model("tiny"))


def test_batched_validation_loss_equals_one_row_at_a_time(tiny):
    from loratui.engine.train.conditioning import TextConditioner
    from loratui.engine.train.denoiser import Denoiser
    from loratui.engine.validate.validation import VALIDATION_TIMESTEPS, ValidationSet

    cpu = torch.device("cpu")
    condition = TextConditioner(tiny.family, tiny.text_encoders, tiny.tokenizers, cpu)
    model = Denoiser(tiny.family, tiny.unet, condition, tiny.noise_scheduler)
    gen = torch.Generator().manual_seed(3)
    # two aspect buckets (two latent sizes), a repeated caption, one image with a loss mask
    latents = [torch.randn(4, 8, 8, generator=gen), torch.randn(4, 8, 16, generator=gen),
               torch.randn(4, 8, 8, generator=gen)]
    captions = ["zxq cat", "zxq dog", "zxq cat"]
    mask = torch.zeros(1, 8, 16, dtype=torch.uint8)
    mask[:, :, :6] = 255
    masks = [None, mask, None]
    batched = ValidationSet(latents, captions, False, 7, masks=masks).loss(model, cpu, torch.float32)

    noise_gen, losses = torch.Generator().manual_seed(7), []
    with torch.no_grad():
        for latent, caption, m in zip(latents, captions, masks):
            x = latent.unsqueeze(0)
            for t in VALIDATION_TIMESTEPS:
                noise = torch.randn(x.shape, generator=noise_gen)
                steps = torch.tensor([t])
                pred = tiny.unet(tiny.noise_scheduler.add_noise(x, noise, steps), steps,
                                 condition([caption])["states"], return_dict=False)[0]
                error = (pred - noise) ** 2
                if m is None:
                    losses.append(error.mean().item())
                else:
                    w = m.float().unsqueeze(0) / 255
                    losses.append(((error * w).sum() / (w.sum() * error.shape[1])).item())
    assert batched == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_batched_samples_equal_one_prompt_at_a_time(tiny):
    from loratui.engine.validate.sampling import NEGATIVE, components_pipeline, decode, render_batch

    pipe = components_pipeline(tiny)
    prompts, seeds = ["zxq on a beach", "zxq in snow", "a red zxq"], [42, 43, 44]
    batched = render_batch(pipe, prompts, seeds, 64, 64, steps=3)
    for prompt, seed, image in zip(prompts, seeds, batched):
        with torch.no_grad():
            latents = pipe(prompt, negative_prompt=NEGATIVE, num_inference_steps=3, width=64, height=64,
                           guidance_scale=7.0, generator=torch.Generator().manual_seed(seed),
                           output_type="latent").images
            alone = np.asarray(decode(pipe, latents)[0], dtype=np.int16)
        assert np.abs(np.asarray(image, dtype=np.int16) - alone).max() <= 1
    assert not np.array_equal(np.asarray(batched[0]), np.asarray(batched[1]))


def test_the_cpu_budget_spreads_the_sample_passes_it_can_pay_for():
    from loratui.engine.validate.schedule import SampleSchedule

    # 100 steps of 1 s, a sample pass every 10 steps at 2 s, 11 validations at 0.1 s: a tenth of
    # the run pays for the final samples, every validation and three passes at saves, spread out
    schedule = SampleSchedule(total_steps=100, interval=10, adaptive=True)
    assert schedule.taken(1, 1.0, 2.0, 1.1) == [30, 50, 80]
    checks = 3 * 2.0 + 2.0 + 1.1
    assert checks / (100 + checks) <= 0.10
    schedule.spent = 2.0  # after the pass at 30, the plan from there on is the same
    assert schedule.taken(31, 1.0, 2.0, 1.1) == [50, 80]
    assert schedule.taken(1, 1.0, 20.0, 1.1) == []  # dearer than the budget: the final samples only
    # an explicit --sample-every (or a GPU) is not thinned; the last step is the final pass, not due
    assert SampleSchedule(100, 10, adaptive=False).taken(1, 1.0, 20.0, 1.1) == list(range(10, 100, 10))
    assert not schedule.due(100) and schedule.due(90) and not schedule.due(95)


def test_on_the_cpu_the_default_schedule_thins_samples_and_keeps_the_final_ones(tmp_path, demo_dataset):
    import json

    from loratui.engine.train.loop import train
    from tinyrun import tiny_config

    # a 20-step sample pass is several training steps' work: the default schedule skips the
    # passes at saves (decided on that estimate before any pass was measured, so not on timing)
    train(tiny_config(demo_dataset, tmp_path, steps=4, save_every=2, batch_size=2), tmp_path / "auto")
    events = [json.loads(line) for line in (tmp_path / "auto" / "events.jsonl").read_text().splitlines()]
    assert {e["step"] for e in events if e["event"] == "sample_saved"} == {4}
    assert [e["step"] for e in events if e["event"] == "validation"] == [2, 4]  # every validation kept
    warnings = [e["message"] for e in events if e["event"] == "warning" and "samples at step" in e["message"]]
    assert len(warnings) == 1 and "samples at step 2 skipped" in warnings[0] and "--sample-every" in warnings[0]
    # the user's --sample-every is honoured exactly, however dear
    train(tiny_config(demo_dataset, tmp_path, steps=4, save_every=2, batch_size=2, sample_every=1), tmp_path / "set")
    events = [json.loads(line) for line in (tmp_path / "set" / "events.jsonl").read_text().splitlines()]
    assert sorted({e["step"] for e in events if e["event"] == "sample_saved"}) == [1, 2, 3, 4]
    assert not any("skipped" in e.get("message", "") for e in events if e["event"] == "warning")


def test_the_cpu_card_counts_only_the_samples_the_schedule_takes(demo_dataset, tmp_path):
    from loratui.engine.config import build_config
    from loratui.engine.planning.preset_plan import Hardware, MemoryNeed, plan_presets, run_flops

    def plan(hw: Hardware, **settings):
        values = dict(base_model="tiny", trigger="zxq", output_dir=str(tmp_path), resolution=64, steps=60,
                      save_every=20, batch_size=2) | settings
        return next(p for p in plan_presets(lambda extra: build_config(
            str(demo_dataset), extra.get("preset", "pet"), overrides={**values, **extra}), hw) if p.preset == "pet")

    need = MemoryNeed(0, 0, 0, flops_per_image=10**6)
    cpu, gpu = plan(Hardware(threads=2)), plan(Hardware(gpu="GPU", memory=1 << 34, free=1 << 34))
    explicit = plan(Hardware(threads=2), sample_every=20)
    assert cpu.check_forwards == gpu.check_forwards == explicit.check_forwards
    assert cpu.thinnable_forwards == 2 * 20 * 2 and gpu.thinnable_forwards == explicit.thinnable_forwards == 0
    assert run_flops(need, cpu) < run_flops(need, gpu) == run_flops(need, explicit)
