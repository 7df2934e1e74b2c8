"""Network types (issue 12, item 1): LoRA, LoCon, LoHa, LoKr and DoRA each train on tiny SD-1.5
and tiny SDXL, export under the tensor names and scaling AUTOMATIC1111/ComfyUI read, pass
``loratui verify``, and load in diffusers where diffusers can.

The delta test rebuilds every module's weight change from the EXPORTED tensors with the formulas
LyCORIS and kohya publish (written out here, not taken from the exporter) and compares it with
what peft's trained adapter merges into the weight: it is what catches a LoKr with two full
factors scaled alpha/rank instead of 1, or a DoRA magnitude in the wrong orientation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tinyrun import tiny_config
from loratui.engine.train.loop import train

pytestmark = pytest.mark.slow  # every network type trained on two families

NETWORKS = ("lora", "locon", "loha", "lokr", "dora")
# plain LoRA on tiny-sdxl is trained, exported and loaded by test_sdxl: the other types here
CASES = [("tiny", n) for n in NETWORKS] + [("tiny-sdxl", n) for n in NETWORKS if n != "lora"]
STEPS = 2
SAVED = 1  # the step whose LoRA file and checkpoint are compared (none is saved at the last step)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One short run per (base model, network type), trained on first use and shared."""
    from loratui.engine.data.demo import make_demo_dataset

    base = tmp_path_factory.mktemp("networks")
    dataset = make_demo_dataset(base / "photos", count=2)
    done: dict = {}

    def run(model: str, network: str):
        if (model, network) not in done:
            # alpha/rank 0.5 and conv alpha/rank 1.5: a wrong scale anywhere changes the delta; at
            # these tiny widths rank 4 makes LoKr's attention factors full matrices and conv rank 2
            # keeps its convolution factors low-rank, so both LoKr scalings are exercised
            cfg = tiny_config(dataset, base / "out", base_model=model, steps=STEPS, save_every=SAVED,
                              batch_size=1, rank=4, alpha=2.0, conv_rank=2, conv_alpha=3.0, network=network,
                              # SDXL's text-encoder keys are test_sdxl's; SD-1.5's cover text encoders here
                              lr=1e-2, train_text_encoder=model == "tiny", text_encoder_lr=1e-2, sample_every=0,
                              validation="off", save_precision="fp32", min_snr_gamma=0)
            done[(model, network)] = train(cfg, base / "out" / f"{model}-{network}")
        return done[(model, network)]

    return run


@pytest.fixture(scope="module")
def base_modules():
    """The base model's UNet and text encoders, loaded once per model (tests copy them)."""
    import importlib

    from loratui.engine.families import family_of
    from loratui.engine.families.models import resolve_model
    from loratui.engine.families.tiny import tiny_model_dir

    loaded: dict = {}

    def load(model: str):
        if model not in loaded:
            family = family_of(resolve_model(model))
            modules = {}
            for name, path in family.module_classes.items():
                if name != "vae":
                    library, cls = path.split(".")
                    modules[name] = getattr(importlib.import_module(library), cls).from_pretrained(
                        tiny_model_dir(model), subfolder=name)
            loaded[model] = (family, modules)
        return loaded[model]

    return load


def _trained_deltas(base_modules, model: str, run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """kohya module name → (base weight, peft's merged weight change), from the last checkpoint."""
    import copy

    from loratui.engine.config import load_run_config
    from loratui.engine.export.lora_files import kohya_names
    from loratui.engine.train import lora

    config = load_run_config(run_dir)
    family, modules = base_modules(model)
    checkpoint = load_file(next((run_dir / "checkpoints").glob("*/adapters.safetensors")))
    network = lora.Network.of(config)
    out = {}
    adapters = {}
    for component, module in modules.items():
        if not any(k.startswith(component + ".") for k in checkpoint):
            continue
        module = copy.deepcopy(module)
        targets = family.unet_targets if component == "unet" else family.text_targets
        lora.add_network(module, list(targets), network, unet=component == "unet")
        state = {k[len(component) + 1:]: v for k, v in checkpoint.items() if k.startswith(component + ".")}
        lora.load_lora_state_dict(module, state)
        adapters[component] = state
        for name, layer in module.named_modules():
            if hasattr(layer, "merge") and hasattr(layer, "base_layer"):
                before = layer.base_layer.weight.detach().clone()
                layer.merge()
                out[(component, name)] = (before.numpy(), (layer.base_layer.weight.detach() - before).numpy())
                layer.unmerge()
    names = kohya_names(family, adapters)
    by_kohya = {}
    for peft_key, kohya_key in names.items():
        component, rest = peft_key.split(".", 1)
        module = next(m for m, _ in [(rest.rsplit(".", n)[0], 0) for n in (2, 1)] if (component, m) in out)
        by_kohya[kohya_key.split(".")[0]] = out[(component, module)]
    return by_kohya


def _published_delta(t: dict[str, torch.Tensor], weight: np.ndarray) -> np.ndarray:
    """A module's weight change from its kohya/LyCORIS tensors, as LyCORIS, ComfyUI and A1111
    compute it: alpha over the rank each format defines (none for a LoKr of two full factors)."""
    w = torch.from_numpy(weight)
    alpha = float(t["alpha"])
    if "hada_w1_a" in t:
        d = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
        return (d.reshape(w.shape) * alpha / t["hada_w1_b"].shape[0]).numpy()
    if any(k.startswith("lokr_") for k in t):
        w1 = t["lokr_w1"] if "lokr_w1" in t else t["lokr_w1_a"] @ t["lokr_w1_b"]
        w2 = t["lokr_w2"] if "lokr_w2" in t else t["lokr_w2_a"] @ t["lokr_w2_b"]
        dim = t["lokr_w1_b"].shape[0] if "lokr_w1_b" in t else t["lokr_w2_b"].shape[0] if "lokr_w2_b" in t else None
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        return (torch.kron(w1, w2).reshape(w.shape) * (alpha / dim if dim else 1.0)).numpy()
    up, down = t["lora_up.weight"], t["lora_down.weight"]
    d = (up.flatten(1) @ down.flatten(1)).reshape(w.shape) * alpha / down.shape[0]
    if "dora_scale" in t:  # LyCORIS's wd_on_output: the merged weight's rows rescaled to the magnitude
        scale = t["dora_scale"]
        assert scale.shape[0] == w.shape[0] and scale.numel() == w.shape[0]  # one per output row
        merged = w + d
        norm = merged.flatten(1).norm(dim=1).reshape(-1, *[1] * (w.dim() - 1))
        return (merged * scale / norm - w).numpy()
    return d.numpy()


def _exported_modules(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(path).items():
        module, _, role = key.partition(".")
        modules.setdefault(module, {})[role] = value.float()
    return modules


@pytest.mark.parametrize("model, network", CASES)
def test_exported_delta_is_the_trained_one_and_verify_passes(runs, base_modules, model, network):
    from loratui.engine.export.verify import verify_lora

    result = runs(model, network)
    assert result.status == "finished"
    step_file = result.run_dir / f"{result.run_dir.name}-step{SAVED:06d}.safetensors"
    exported = _exported_modules(step_file)
    trained = _trained_deltas(base_modules, model, result.run_dir)
    assert set(exported) == set(trained)
    moved = 0
    for name, (weight, delta) in trained.items():
        np.testing.assert_allclose(_published_delta(exported[name], weight), delta, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
        moved += bool(np.abs(delta).max() > 0)
    assert moved > len(trained) // 2  # training changed the weights: the comparison means something
    if network == "lokr":  # both scalings are exercised: two full factors (scale 1), and a low-rank one
        assert any("lokr_w1" in t and "lokr_w2" in t for t in exported.values())
        assert any("lokr_w2_a" in t for t in exported.values())
    if network in ("locon", "loha", "lokr"):
        assert any("_resnets_" in n or "_in_layers_" in n or "_out_layers_" in n for n in exported)
    else:
        assert not any("_in_layers_" in n or "_resnets_" in n for n in exported)

    report = verify_lora(result.lora_path, model)
    assert report.ok, [f.message for f in report.findings]
    assert all(m.target for m in report.modules)


@pytest.mark.parametrize("network", NETWORKS)
def test_metadata_names_the_network_as_kohya_and_lycoris_write_it(runs, network):
    result = runs("tiny", network)
    with safe_open(result.lora_path, "pt") as f:
        meta = f.metadata()
    args = json.loads(meta["ss_network_args"])
    expected = {"lora": ("networks.lora", {}),
                "locon": ("networks.lora", {"conv_dim": "2", "conv_alpha": "3"}),
                "loha": ("lycoris.kohya", {"algo": "loha", "conv_dim": "2", "conv_alpha": "3"}),
                "lokr": ("lycoris.kohya", {"algo": "lokr", "conv_dim": "2", "conv_alpha": "3"}),
                "dora": ("lycoris.kohya", {"algo": "lora", "dora_wd": "True", "wd_on_output": "True"})}[network]
    assert (meta["ss_network_module"], args) == expected
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2.0"


@pytest.fixture(scope="module")
def pipelines():
    """The tiny pipelines, loaded once per model (each test loads and deletes its adapter)."""
    import diffusers

    from loratui.engine.families.tiny import tiny_model_dir

    loaded: dict = {}

    def load(model: str):
        if model not in loaded:
            cls = getattr(diffusers, "StableDiffusionXLPipeline" if model == "tiny-sdxl" else "StableDiffusionPipeline")
            loaded[model] = cls.from_pretrained(tiny_model_dir(model))
            loaded[model].set_progress_bar_config(disable=True)
        return loaded[model]

    return load


# loading a diffusers file into the SDXL pipeline is the slow part: LoCon's convolution keys are
# the SDXL-specific case; DoRA loads through the same code on both families
@pytest.mark.parametrize("model, network", [c for c in CASES if c != ("tiny-sdxl", "dora")])
def test_diffusers_file_loads_where_diffusers_can(runs, pipelines, model, network):
    result = runs(model, network)
    folder = result.run_dir / "diffusers"
    card = (result.run_dir / "README.md").read_text(encoding="utf-8")
    if network in ("loha", "lokr"):
        assert not folder.exists()
        assert "diffusers cannot load" in card
        return
    from loratui.engine.families import family_of
    from loratui.engine.families.models import resolve_model

    pipe = pipelines(model)
    family = family_of(resolve_model(model))
    torch.manual_seed(7)  # one fixed input: a UNet pass is what the LoRA changes
    text, sizes = family.dummy_conditioning(pipe.unet.config, 1, "cpu", torch.float32)
    noisy = torch.randn(1, pipe.unet.config.in_channels, 8, 8)

    def output() -> np.ndarray:
        with torch.no_grad():
            return family.predict(pipe.unet, noisy, torch.tensor([500]), text, sizes).numpy()

    base = output()
    pipe.load_lora_weights(str(folder), adapter_name="x")
    try:
        with safe_open(folder / "pytorch_lora_weights.safetensors", "pt") as f:
            in_file = {k.split(".lora")[0] for k in f.keys()}
        loaded = {f"{component}.{n}" for component in ("unet", "text_encoder", "text_encoder_2")
                  if hasattr(pipe, component) for n, m in getattr(pipe, component).named_modules()
                  if "x" in (getattr(m, "lora_A", None) or {})}
        # every module in the file went in, and nothing else (text-encoder keys may carry text_model.)
        assert {k.replace("text_model.", "") for k in loaded} == {k.replace("text_model.", "") for k in in_file}
        assert np.abs(output() - base).max() > 1e-5  # weight 1 changes the result
        pipe.set_adapters(["x"], adapter_weights=[0.0])
        if network == "dora":  # at weight 0 peft keeps DoRA's magnitude (it scales only the LoRA part)
            pipe.disable_lora()
        np.testing.assert_allclose(output(), base, atol=1e-6)
    finally:
        pipe.enable_lora()
        pipe.delete_adapters("x")


@pytest.mark.parametrize("yaml_text, expected", [
    ("network_module: networks.lora\nnetwork_dim: 8\n", ("lora", None)),
    ("network_module: networks.lora\nconv_dim: 4\nconv_alpha: 2\n", ("locon", 4)),  # kohya's LoCon
    ("network_module: lycoris.kohya\nalgo: loha\nconv_dim: 4\n", ("loha", 4)),
    ("network_module: lycoris.kohya\nlycoris_algo: lokr\n", ("lokr", None)),
    ("network_module: lycoris.kohya\nalgo: lora\ndora_wd: true\n", ("dora", None)),
])
def test_kohya_and_lycoris_yaml_keys_choose_the_network(tmp_path, yaml_text, expected):
    from loratui.engine.config import build_config, load_config_file

    path = tmp_path / "run.yaml"
    path.write_text(f"train_data_dir: {tmp_path}\n" + yaml_text, encoding="utf-8")
    cfg = build_config(None, file_values=load_config_file(path), file_label=str(path))
    assert (cfg.network, cfg.conv_rank) == expected


def test_an_unknown_network_is_one_line_naming_the_key(tmp_path):
    from loratui.engine.config import build_config, load_config_file
    from loratui.engine.errors import ConfigError

    path = tmp_path / "run.yaml"
    path.write_text(f"train_data_dir: {tmp_path}\nnetwork_module: lycoris.kohya\nalgo: glora\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert "algo = 'glora'" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_config(str(tmp_path), overrides={"network": "lycoris"})
    assert "--network" in str(err.value) and "'locon'" in str(err.value)
