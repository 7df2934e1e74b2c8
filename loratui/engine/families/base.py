"""The model-family seam: what differs between SD-1.5, SD-2 and SDXL, in one place per family.

The training loop, validation, sampling, the memory model and export call a ``Family``; none of
them asks which family it is. A family declares its data as class attributes (its text
encoders, LoRA targets, kohya names, default resolution) and implements a few methods: load
its components, turn captions into the UNet's conditioning, predict noise, and build the
pipeline that samples it. A new family is a new module with a subclass and a registry line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from loratui.engine.errors import ModelError

# SD's attention projections: what kohya's default LoRA and diffusers' scripts train.
ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
CLIP_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
# the transformer blocks' feed-forward layers (diffusers' GEGLU projection and output; CLIP's MLP)
FEED_FORWARD_TARGETS = ("ff.net.0.proj", "ff.net.2")
CLIP_MLP_TARGETS = ("fc1", "fc2")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved ``--base-model``: what kind it is, where it is, and which family it holds."""

    kind: str  # "tiny" | "diffusers" | "hub" | "single_file"
    location: str
    name: str  # what the run card and ss_sd_model_name show
    family: str = "sd15"


@dataclass
class Components:
    """The loaded parts of a pipeline that training uses, by name (never by position)."""

    family: "Family"
    spec: ModelSpec
    modules: dict[str, Any]  # "unet", "vae" and each of the family's text encoders
    tokenizers: dict[str, Any]  # keyed by the text encoder each one feeds
    noise_scheduler: Any

    @property
    def unet(self) -> Any:
        return self.modules["unet"]

    @property
    def vae(self) -> Any:
        return self.modules["vae"]

    @property
    def text_encoders(self) -> dict[str, Any]:
        return {name: self.modules[name] for name in self.family.text_encoders}

    @property
    def version(self) -> str:
        """kohya's ``ss_base_model_version``."""
        return self.family.kohya_version


class Family:
    """One model family. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    label: ClassVar[str]  # what the user reads ("SD-1.5")
    kohya_version: ClassVar[str]  # ss_base_model_version
    modelspec_architecture: ClassVar[str]  # modelspec.architecture
    v2: ClassVar[bool] = False  # kohya's ss_v2 (an OpenCLIP text encoder)
    default_resolution: ClassVar[int] = 512
    # the text encoders in pipeline order, and the kohya prefix of each one's LoRA keys
    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder",)
    kohya_prefixes: ClassVar[dict[str, str]] = {"unet": "lora_unet", "text_encoder": "lora_te"}
    unet_targets: ClassVar[tuple[str, ...]] = ATTENTION_TARGETS
    text_targets: ClassVar[tuple[str, ...]] = CLIP_TARGETS
    # --train-layers by name → (UNet targets, text-encoder targets); "attention" is the default above
    layer_targets: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
        "attention": (ATTENTION_TARGETS, CLIP_TARGETS),
        "attention-ff": (ATTENTION_TARGETS + FEED_FORWARD_TARGETS, CLIP_TARGETS + CLIP_MLP_TARGETS),
    }
    pipeline_class: ClassVar[str] = "StableDiffusionPipeline"  # diffusers' class, by name
    # each module's class ("library.Class") in a diffusers folder, and each encoder's tokenizer folder
    module_classes: ClassVar[dict[str, str]] = {
        "unet": "diffusers.UNet2DConditionModel",
        "vae": "diffusers.AutoencoderKL",
        "text_encoder": "transformers.CLIPTextModel",
    }
    tokenizer_folders: ClassVar[dict[str, str]] = {"text_encoder": "tokenizer"}
    tiny_version: ClassVar[int] = 1  # bump when the family's tiny configs change
    # what each preset sets differently for this family (its own field practice), by preset name
    preset_values: ClassVar[dict[str, dict[str, Any]]] = {}

    def lora_targets(self, layers: str = "attention") -> tuple[list[str], list[str]]:
        """The (UNet, text-encoder) modules a LoRA trains for the named layer choice."""
        unet, text = self.layer_targets[layers]
        return list(unet), list(text)

    def architecture(self, v_pred: bool) -> str:
        """``modelspec.architecture`` of a LoRA for this family (v-prediction can change it)."""
        return self.modelspec_architecture

    def training_resolution(self, spec: ModelSpec, v_pred: bool) -> int:
        """The resolution ``spec`` was made for, and a preset trains it at."""
        return self.default_resolution

    # --- where its configs are and how it loads

    def config_folder(self, spec: ModelSpec) -> Path:
        """A diffusers folder whose component configs describe ``spec``'s architecture, offline:
        the tiny model's own, the folder itself, the configs a single file's shapes call for, or
        the family's shipped configs for a hub id (measured without a download)."""
        if spec.kind == "tiny":
            from loratui.engine.families.tiny import tiny_model_dir

            return tiny_model_dir(spec.location)
        if spec.kind == "diffusers":
            return Path(spec.location)
        if spec.kind == "single_file":
            from loratui.engine.families.shipped import config_dir_for_checkpoint

            return config_dir_for_checkpoint(Path(spec.location))
        return self.shipped_config_dir()

    def shipped_config_dir(self) -> Path:
        """The family's full-size configs and tokenizers that loratui ships, as a diffusers folder."""
        raise NotImplementedError

    def load(self, spec: ModelSpec) -> Components:
        """The components named by ``spec`` in fp32 on the CPU (the trainer moves them)."""
        raise NotImplementedError

    def load_as(self, spec: ModelSpec, family: str) -> Components:
        """Hand ``spec`` to the family it turned out to be once its files were looked at."""
        from dataclasses import replace

        from loratui.engine.families import family_of

        other = replace(spec, family=family)
        return family_of(other).load(other)

    def load_pretrained(self, spec: ModelSpec, location: str) -> Components:
        """The family's modules, tokenizers and scheduler from a diffusers folder or hub id."""
        import importlib

        from diffusers import DDPMScheduler
        from transformers import CLIPTokenizer

        try:
            modules = {}
            for name, path in self.module_classes.items():
                library, cls = path.split(".")
                modules[name] = getattr(importlib.import_module(library), cls).from_pretrained(location, subfolder=name)
            tokenizers = {encoder: CLIPTokenizer.from_pretrained(location, subfolder=folder)
                          for encoder, folder in self.tokenizer_folders.items()}
            scheduler = DDPMScheduler.from_pretrained(location, subfolder="scheduler")
        except (OSError, ValueError) as exc:
            raise load_error(spec, exc) from None
        return Components(self, spec, modules, tokenizers, scheduler)

    def build_tiny(self, tokenizer: Any) -> Any:
        """The family's tiny pipeline (real topology, tiny widths) around a tiny ``tokenizer``."""
        raise NotImplementedError

    # --- conditioning and prediction

    def encode_text(self, encoders: dict[str, Any], tokenizers: dict[str, Any], captions: list[str],
                    device: Any) -> dict[str, Any]:
        """The UNet's text conditioning for ``captions``: named tensors, batch first."""
        raise NotImplementedError

    def predict(self, unet: Any, noisy: Any, timesteps: Any, text: dict[str, Any], sizes: Any = None) -> Any:
        """The UNet's output for ``noisy`` latents at ``timesteps``. ``sizes`` holds each image's
        (original h, w, crop top, left, target h, w) for families that condition on them."""
        return unet(noisy, timesteps, text["states"], return_dict=False)[0]

    def dummy_conditioning(self, unet_config: dict[str, Any], batch: int, device: Any, dtype: Any
                           ) -> tuple[dict[str, Any], Any]:
        """(text, sizes) of the right shapes for ``predict``: the memory model's meta passes."""
        import torch

        states = torch.randn(batch, 77, unet_config["cross_attention_dim"], device=device, dtype=dtype)
        return {"states": states}, None

    # --- sampling and export

    def pipeline(self, modules: dict[str, Any], tokenizers: dict[str, Any], scheduler: Any) -> Any:
        """A diffusers pipeline around existing modules (nothing copied or reloaded)."""
        raise NotImplementedError

    def kohya_unet_module(self, module: str) -> str:
        """The kohya name of a UNet module given its diffusers path (``down_blocks.0.…``)."""
        return module

    def base_model_name(self, spec: ModelSpec) -> str:
        return spec.name


def config_family(unet_config: dict[str, Any]) -> str:
    """The family a diffusers UNet config belongs to."""
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl"
    if unet_config.get("cross_attention_dim") == 1024 or unet_config.get("use_linear_projection") is True:
        return "sd2"  # OpenCLIP-H's width; SD-2's linear attention projections tell tiny-sd2 too
    return "sd15"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries write paragraphs)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and info logs: the run has its own view."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # else it warns about torchvision
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_error(spec: ModelSpec, exc: BaseException) -> ModelError:
    """One line for a diffusers folder or hub id that would not load."""
    where = "download it from the hub" if spec.kind == "hub" else "load it"
    return ModelError(
        f"{spec.location}: could not {where}: {first_line(exc)}",
        "check the name and your connection, or pass a local folder or .safetensors file",
    )
