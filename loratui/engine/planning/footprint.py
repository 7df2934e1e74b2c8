"""How much GPU memory a LoRA training run takes, measured on the model's real architecture.

The UNet is built from its config on PyTorch's ``meta`` device (tensors with shapes and no
data, so a full SD-1.5 UNet costs no memory and no compute), a LoRA is added as training adds
it, and one forward and backward pass runs under a dispatch mode that adds up the bytes of
every tensor the pass allocates and subtracts them when the tensor is freed. The highest
point is what the step needs beyond the weights: activations saved for backward, their
gradients and the backward's temporaries, with gradient checkpointing's recomputation too.

Attention is counted as the fused kernels PyTorch uses on a GPU (flash / memory-efficient:
query, key, value, output and a log-sum-exp are kept, never the attention matrix), so the
figure is the GPU's, not the CPU fallback's. Two passes (batch 1 and 2) give the cost per
image and the fixed part; weights, LoRA parameters, their gradients and optimizer states are
counted from the parameter shapes. Measurements are kept in the cache, keyed by the UNet's
config, so a model is measured once per resolution and setting (about a second for SD-1.5).

The same passes count the step's floating-point operations (PyTorch's FLOP counter, with the
fused attention kernels' own formulas, recomputation under checkpointing included), from
which a run's time is estimated (``engine/speed.py``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loratui.engine import atomic
from loratui.engine.families import FAMILIES, ModelSpec, family_of
from loratui.engine.families.base import config_family
from loratui.engine.paths import cache_dir

FOOTPRINT_VERSION = 3  # 2: FLOPs counted too; 3: counted without torch's FlopCounterMode. Bump when the measurement changes, so cached figures are re-measured
CACHE_FILE = "footprints.json"
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw8bit": 2}  # per trainable parameter (two moments)
_lock = threading.Lock()


@dataclass(frozen=True)
class UnetFootprint:
    """Measured activation memory of one UNet training pass: ``fixed + per_image × batch``."""

    fixed: int
    per_image: int
    params: int  # all UNet parameters, LoRA included
    lora_params: int
    flops_fixed: int = 0  # FLOPs of one forward + backward: ``flops_fixed + flops_per_image × batch``
    flops_per_image: int = 0


@dataclass(frozen=True)
class Estimate:
    """A run's peak GPU memory for one pass of ``batch`` images, and what it is made of."""

    batch: int
    total: int
    parts: dict[str, int]


@dataclass(frozen=True)
class MemoryModel:
    """Everything a training run keeps on the GPU, and the work of a pass, from measured figures."""

    unet: UnetFootprint
    unet_weight_bytes: int
    text_encoder_bytes: int
    vae_bytes: int  # on the GPU while training only when samples are rendered
    trainable_params: int
    optimizer_state_bytes: int  # per trainable parameter

    def estimate(self, batch: int) -> Estimate:
        parts = {
            "unet weights": self.unet_weight_bytes,
            "text encoder": self.text_encoder_bytes,
            "vae": self.vae_bytes,
            # fp32 LoRA parameters, their gradients, and the optimizer's moments
            "lora + optimizer": self.trainable_params * (4 + 4 + self.optimizer_state_bytes),
            "activations": self.unet.fixed + self.unet.per_image * batch,
        }
        return Estimate(batch, sum(parts.values()), parts)

    def flops(self, batch: int) -> int:
        """FLOPs of one UNet forward and backward pass of ``batch`` images."""
        return self.unet.flops_fixed + self.unet.flops_per_image * batch

    def largest_batch(self, budget: int, limit: int) -> int:
        """The largest batch (1..limit) whose estimate fits ``budget`` bytes; 0 if none does."""
        fitting = [b for b in range(1, limit + 1) if self.estimate(b).total <= budget]
        return fitting[-1] if fitting else 0


def config_folder(spec: ModelSpec) -> Path:
    """The diffusers folder whose component configs describe ``spec``'s architecture (the
    family's shipped configs for a hub id, so nothing is downloaded to measure it)."""
    return family_of(spec).config_folder(spec)


def memory_model(config: Any, spec: ModelSpec, precision: str, optimizer: str = "adamw") -> MemoryModel:
    """The memory model of training ``config`` (a RunConfig) on ``spec`` in ``precision``.

    ``precision`` is the compute dtype the run will use ("bf16", "fp16" or "fp32");
    ``optimizer`` the one it will run ("adamw" or "adamw8bit").
    """
    family = family_of(spec)
    folder = family.config_folder(spec)
    parts = ("unet", "vae", *family.text_encoders)
    configs = {part: _read_json(folder / part / "config.json") for part in parts}
    width = DTYPE_BYTES[precision]
    unet = measure_unet(configs["unet"], config.resolution, config.rank, precision, config.gradient_checkpointing)
    text_params = sum(_param_count(name, configs[name]) for name in family.text_encoders)
    sampling = config.sample_interval > 0
    trainable = unet.lora_params
    if config.train_text_encoder:
        trainable += sum(_text_lora_params(configs[name], config.rank) for name in family.text_encoders)
    return MemoryModel(
        unet=unet,
        unet_weight_bytes=(unet.params - unet.lora_params) * width,
        text_encoder_bytes=text_params * width,
        vae_bytes=_param_count("vae", configs["vae"]) * 4 if sampling else 0,  # the VAE stays fp32
        trainable_params=trainable,
        optimizer_state_bytes=OPTIMIZER_STATE_BYTES[optimizer],
    )


def measure_unet(
    unet_config: dict[str, Any], resolution: int, rank: int, precision: str, checkpointing: bool
) -> UnetFootprint:
    """Activation memory of a UNet training pass at ``resolution`` px (cached on disk)."""
    key = _key(unet_config, resolution, rank, precision, checkpointing)
    with _lock:
        cached = _read_cache().get(key)
        if cached is not None:
            return UnetFootprint(**cached)
        unet = meta_unet(unet_config, rank, precision, checkpointing)
        latent = resolution // 8
        (one, flops_one), (two, flops_two) = (_measure_pass(unet, unet_config, b, latent, precision) for b in (1, 2))
        per_image = max(two - one, 0)
        flops_per_image = max(flops_two - flops_one, 0)
        footprint = UnetFootprint(
            fixed=max(one - per_image, 0),
            per_image=per_image,
            params=sum(p.numel() for p in unet.parameters()),
            lora_params=sum(p.numel() for p in unet.parameters() if p.requires_grad),
            flops_fixed=max(flops_one - flops_per_image, 0),
            flops_per_image=flops_per_image,
        )
        cache = _read_cache()
        cache[key] = asdict(footprint)
        atomic.write_json(cache_dir() / CACHE_FILE, cache)
        return footprint


def meta_unet(unet_config: dict[str, Any], rank: int, precision: str, checkpointing: bool):
    """The UNet of ``unet_config`` on the meta device with LoRA as a run adds it (its family's
    targets), in the compute dtype, with fused attention and the run's checkpointing."""
    import torch
    from diffusers import UNet2DConditionModel

    from loratui.engine.train import lora
    from loratui.engine.families.models import quiet_libraries

    quiet_libraries()
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        unet.requires_grad_(False)
        lora.add_lora(unet, list(FAMILIES[config_family(unet_config)].unet_targets), rank, float(rank))
    # autocast runs the LoRA matmuls in the compute dtype too; its fp32 masters are counted apart
    unet.to(_torch_dtype(precision))
    unet.set_attn_processor(_FusedAttention())
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    return unet


def _measure_pass(unet, unet_config: dict[str, Any], batch: int, latent: int, precision: str) -> tuple[int, int]:
    """(peak bytes, FLOPs) of one forward and backward pass of ``batch`` latents."""
    meter = _LiveBytes(count_flops=True)
    peak = peak_of_pass(unet, unet_config, batch, latent, precision, meter=meter)
    return peak, meter.flops


def peak_of_pass(
    unet, unet_config: dict[str, Any], batch: int, latent: int, precision: str, device: str = "meta",
    meter: "_LiveBytes | None" = None,
) -> int:
    """Peak bytes alive during one forward and backward pass of ``batch`` latents."""
    import torch
    import torch.nn.functional as F

    dtype = _torch_dtype(precision)
    meter = meter or _LiveBytes()
    with meter:
        family = FAMILIES[config_family(unet_config)]
        x = torch.randn(batch, unet_config.get("in_channels", 4), latent, latent, device=device, dtype=dtype)
        text, sizes = family.dummy_conditioning(unet_config, batch, device, dtype)
        t = torch.zeros(batch, device=device, dtype=torch.long)
        out = family.predict(unet, x, t, text, sizes)
        loss = F.mse_loss(out.float(), x.float())
        del out
        loss.backward()
        del loss, x, text, sizes, t
    for p in unet.parameters():
        p.grad = None
    return meter.peak


class _LiveBytes:
    """A dispatch mode that tracks the bytes of live tensor storages and their peak, and with
    ``count_flops`` the model FLOPs of the ops it sees (torch's per-op formulas; torch's own
    FlopCounterMode also attributes every op to each module around it, which cost most of a
    measurement's time and is not needed here)."""

    def __init__(self, count_flops: bool = False) -> None:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        meter = self
        formulas = _flop_formulas() if count_flops else {}
        Tensor = torch.Tensor

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                if isinstance(out, Tensor):
                    meter.track(out)
                elif isinstance(out, (tuple, list)):
                    for item in out:
                        if isinstance(item, Tensor):
                            meter.track(item)
                formula = formulas.get(func._overloadpacket)
                if formula is not None:
                    meter.flops += formula(*args, **kwargs, out_val=out)
                return out

        self.mode = Mode()
        self.refs: dict[int, list[int]] = {}  # storage -> [bytes, live tensors on it]
        self.live = 0
        self.peak = 0
        self.flops = 0

    def track(self, tensor: Any) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        entry = self.refs.get(key)
        if entry is None:
            size = storage.nbytes()
            self.refs[key] = [size, 1]
            self.live += size
            if self.live > self.peak:
                self.peak = self.live
        else:
            entry[1] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.refs[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self.refs[key]
            self.live -= entry[0]

    def __enter__(self) -> _LiveBytes:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode.__exit__(*exc)


def _flop_formulas() -> dict[Any, Any]:
    """torch's FLOP formula per op (matmuls, convolutions, attention), by op packet."""
    from torch.utils.flop_counter import flop_registry

    return dict(flop_registry)


class _FusedAttention:
    """SD-1.5's attention as a GPU runs it: one fused kernel (what it saves for backward)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        import torch

        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        head = q.shape[-1] // attn.heads
        q, k, v = (t.view(batch, -1, attn.heads, head).transpose(1, 2) for t in (q, k, v))
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False)[0]
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head)
        return attn.to_out[1](attn.to_out[0](out))


def _param_count(part: str, config: dict[str, Any]) -> int:
    import torch

    with torch.device("meta"):
        if part == "vae":
            from diffusers import AutoencoderKL

            model = AutoencoderKL.from_config(config)
        else:  # SDXL's second encoder (bigG) carries a projection the first has not
            from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

            projected = "CLIPTextModelWithProjection" in (config.get("architectures") or [])
            model = (CLIPTextModelWithProjection if projected else CLIPTextModel)(CLIPTextConfig(**_known(config)))
    return sum(p.numel() for p in model.parameters())


def _text_lora_params(config: dict[str, Any], rank: int) -> int:
    """LoRA parameters on the text encoder's q/k/v/out projections (square, hidden × hidden)."""
    return config["num_hidden_layers"] * 4 * 2 * rank * config["hidden_size"]


def _known(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the bookkeeping keys a config.json carries beside the model's own."""
    skip = {"architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype", "model_type"}
    return {k: v for k, v in config.items() if k not in skip}


def _torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def _key(unet_config: dict[str, Any], *settings: object) -> str:
    import diffusers
    import torch

    text = json.dumps([FOOTPRINT_VERSION, torch.__version__, diffusers.__version__,
                       {k: v for k, v in sorted(unet_config.items()) if not k.startswith("_")}, settings],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
