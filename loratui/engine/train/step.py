"""One training micro-batch: what it is drawn from, and the loss of any slice of it.

Everything random about micro-batch ``m`` is drawn on the CPU from generators seeded by
``(seed, m)`` for the whole planned batch, and only then sliced. So a batch split in two
(after an out-of-memory error) or across GPUs (data parallel) computes exactly the samples
the unsplit batch would have, and a resumed run draws what the interrupted one would have.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from loratui.engine.config import RunConfig
from loratui.engine.train.denoiser import Denoiser
from loratui.engine.train.loss import debiased_weight, elementwise_loss, huber_threshold, pyramid_noise
from loratui.engine.planning.run_plan import RunPlan
from loratui.engine.data.prompts import training_caption


def stream_seed(seed: int, micro: int) -> int:
    """A distinct, well-mixed seed per micro-batch (the constants are large odd numbers)."""
    return (seed * 0x9E3779B97F4A7C15 + micro * 0xBF58476D1CE4E5B9) % (2**63 - 1)


@dataclass
class MicroBatch:
    """A planned batch with its draws, on the CPU: slice it, then move the slice to the device."""

    indices: list[int]
    latents: Any  # (B, C, h, w), scaled
    noise: Any
    timesteps: Any
    captions: list[str]
    sizes: Any = None  # (B, 6): original h, w, crop top, left, target h, w (SDXL's conditioning)
    reg: Any = None  # (B,) bool: a regularisation image (None: the run has none)
    weights: Any = None  # (B,) each sample's loss weight: 1, or prior_loss_weight for a class image
    masks: Any = None  # (B, 1, h, w) uint8 loss masks (None: the loss is not masked)

    def __len__(self) -> int:
        return len(self.indices)


def draw_micro(
    plan: RunPlan,
    config: RunConfig,
    micro: int,
    latents_of: Callable[[list[int], Any], Any],
    scaling: float,
    num_timesteps: int,
    masks: dict[int, Any] | None = None,
) -> MicroBatch:
    """The ``micro``-th batch of the run, with its latent samples, noise, timesteps and captions
    (and, when the run has them, which samples are class images, their weights and loss masks)."""
    import torch

    _, indices = plan.batches.batch_at(micro)
    gen = torch.Generator().manual_seed(stream_seed(config.seed, micro))
    py_rng = random.Random(stream_seed(config.seed, micro))
    latents = latents_of(indices, gen) * scaling
    bsz = latents.shape[0]
    noise = torch.randn(latents.shape, generator=gen)
    if config.noise_offset:
        noise += config.noise_offset * torch.randn((bsz, latents.shape[1], 1, 1), generator=gen)
    timesteps = torch.randint(0, num_timesteps, (bsz,), generator=gen)
    if config.multires_noise_iterations:  # drawn after the rest: runs without it keep their draws
        noise = pyramid_noise(noise, config.multires_noise_iterations, config.multires_noise_discount, gen)
    captions = [
        training_caption(  # a class image keeps its class caption: the trigger is the subject's alone
            plan.caption_for(plan.items[i]), None if plan.items[i].reg else config.trigger, py_rng,
            shuffle=config.shuffle_tags, keep_tokens=config.keep_tokens, dropout=config.caption_dropout,
        )
        for i in indices
    ]
    sizes = torch.tensor([plan.items[i].size_conditioning() for i in indices])
    batch = MicroBatch(indices, latents, noise, timesteps, captions, sizes)
    if config.reg_folder:
        batch.reg = torch.tensor([plan.items[i].reg for i in indices])
        batch.weights = torch.where(batch.reg, config.prior_loss_weight, 1.0)
    if plan.masked:
        from loratui.engine.data.masks import batch_masks

        batch.masks = batch_masks(plan.items, masks or {}, indices)
    return batch


def fixed_captions(plan: RunPlan, config: RunConfig) -> list[str]:
    """Every caption ``draw_micro`` can give when tags are not shuffled (with shuffled tags there
    is no fixed set): each image's with the trigger, a class image's own, and "" with caption
    dropout."""
    rng = random.Random(0)  # unused without shuffling: the caption is the same for any draw
    captions = [training_caption(plan.caption_for(item), None if item.reg else config.trigger, rng,
                                 keep_tokens=config.keep_tokens) for item in plan.items]
    return captions + ([""] if config.caption_dropout > 0 else [])


def sample_losses(
    model: Denoiser,
    batch: MicroBatch,
    rows: list[int],
    config: RunConfig,
    device: Any,
    dtype: Any,
) -> Any:
    """The per-sample training loss for ``rows`` of ``batch``: the config's loss type (l2, l1,
    pseudo-Huber), over the loss mask's area when the batch has masks, min-SNR and
    debiased-estimation weighted when enabled (train/loss.py). A class image's prior_loss_weight
    is not applied here (``batch.weights``): the caller reports both losses apart."""
    from diffusers.training_utils import compute_snr

    latents = take_rows(batch.latents, rows).to(device, dtype)
    noise = take_rows(batch.noise, rows).to(device, dtype)
    timesteps = take_rows(batch.timesteps, rows).to(device)
    sizes = take_rows(batch.sizes, rows).to(device) if batch.sizes is not None else None
    noisy = model.noise_scheduler.add_noise(latents, noise, timesteps)
    pred = model.predict(noisy, timesteps, model.condition([batch.captions[r] for r in rows]), sizes)
    target = model.target(latents, noise, timesteps)
    scheduler = model.noise_scheduler
    c = None
    if config.loss_type in ("huber", "smooth_l1"):
        c = huber_threshold(config.huber_schedule, config.huber_c, timesteps, scheduler.alphas_cumprod,
                            scheduler.config.num_train_timesteps)
    loss = elementwise_loss(pred.float(), target.float(), config.loss_type, c)
    if batch.masks is not None:
        from loratui.engine.data.masks import as_weights, masked_mean

        loss = masked_mean(loss, as_weights(take_rows(batch.masks, rows).to(device)))
    else:
        loss = loss.mean(dim=[1, 2, 3])
    if config.min_snr_gamma > 0 or config.debiased_estimation:
        snr = compute_snr(scheduler, timesteps)
    if config.min_snr_gamma > 0:
        weight = snr.clamp(max=config.min_snr_gamma)
        # zero terminal SNR makes the last timestep's SNR 0: its epsilon weight is 0, not 0/0
        loss = loss * (weight / (snr + 1) if model.v_prediction else weight / snr.clamp(min=1e-8))
    if config.debiased_estimation:
        loss = loss * debiased_weight(snr, model.v_prediction)
    return loss


def loss_sums(losses: Any, optimised: Any, reg: Any) -> Any:
    """What a slice of a batch adds to its step's loss sums: the optimised loss's sum, and with
    class images (``reg``: which samples are) the training and class images' losses and counts."""
    import torch

    total = optimised.sum().view(1)
    if reg is None:
        return total
    mine = (~reg).float()
    return torch.cat([total, torch.stack([(losses * mine).sum(), mine.sum(),
                                          (losses * reg.float()).sum(), reg.float().sum()])])


def split_losses(sums: list[float]) -> tuple[float | None, float | None]:
    """(instance loss, prior loss) means from [instance sum, instances, prior sum, priors]; None
    for a kind the step had none of, or for a run without class images."""
    if len(sums) < 4:
        return None, None
    return (sums[0] / sums[1] if sums[1] else None), (sums[2] / sums[3] if sums[3] else None)


def take_rows(tensor: Any, rows: list[int]) -> Any:
    """``tensor[rows]``; as a slice when the rows are evenly spaced (a piece of this process's
    share always is), so a batch already on the GPU is cut without copying an index there."""
    step = rows[1] - rows[0] if len(rows) > 1 else 1
    if step > 0 and rows == list(range(rows[0], rows[-1] + 1, step)):
        return tensor[rows[0]:rows[-1] + 1:step]
    import torch

    return tensor[torch.tensor(rows, device=tensor.device)]


def chunks(rows: list[int], parts: int) -> list[list[int]]:
    """``rows`` in ``parts`` nearly equal, non-empty pieces (fewer when there are few rows)."""
    parts = max(1, min(parts, len(rows)))
    size, extra = divmod(len(rows), parts)
    out, start = [], 0
    for p in range(parts):
        end = start + size + (1 if p < extra else 0)
        out.append(rows[start:end])
        start = end
    return out
