"""`loratui verify`: every LoRA loratui exports passes; planted defects are named key by key.

The key map verify uses is derived from the base model's module names (LDM paths walked from
the UNet config), not from the exporter; diffusers' own single-file converter checks the walk.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from tinyrun import tiny_config
from loratui.cli import app

RUNS = [("tiny", False), ("tiny", True), ("tiny-sd2", False), ("tiny-sd2", True),
        ("tiny-sdxl", False), ("tiny-sdxl", True)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """One-step runs of every tiny family, with and without the text encoder(s): their folders."""
    from loratui.engine.data.demo import make_demo_dataset
    from loratui.engine.train.loop import train

    base = tmp_path_factory.mktemp("verify")
    dataset = make_demo_dataset(base / "photos", count=2)
    runs = {}
    for model, te in RUNS:
        name = f"{model}-{'te' if te else 'unet'}"
        cfg = tiny_config(dataset, base / "out", base_model=model, steps=1, save_every=0, batch_size=1, rank=2,
                          alpha=4.0, train_text_encoder=te, sample_every=0, validation="off", name=name)
        result = train(cfg, base / "out" / name, [])
        assert result.status == "finished"
        runs[(model, te)] = result.run_dir
    return runs


def verify(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["verify", *map(str, args), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def findings(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


@pytest.mark.parametrize(("model", "te"), RUNS)
def test_every_exported_file_passes(exported, model, te):
    run_dir = exported[(model, te)]
    for path in (run_dir / f"{run_dir.name}.safetensors", run_dir / "diffusers" / "pytorch_lora_weights.safetensors"):
        code, report = verify(path, "--base-model", model)
        assert code == 0, report["findings"]
        assert report["ok"] and report["network_type"].startswith("LoRA")
        assert report["family"] == {"tiny": "sd15", "tiny-sd2": "sd2", "tiny-sdxl": "sdxl"}[model]
        assert all(m["target"] for m in report["modules"]) and all(m["rank"] == 2 for m in report["modules"])
        assert all(m["alpha"] == 4.0 for m in report["modules"])
        blocks = report["blocks"]
        assert any(b.startswith("TE") for b in blocks) == te
        assert {"IN", "MID", "OUT"} <= {b.rstrip("0123456789") for b in blocks}
        assert math.isclose(sum(b["share"] for b in blocks.values()), 1.0, rel_tol=1e-6)
        assert "lora_" in report["modules"][0]["module"] or report["layout"] == "diffusers"
    assert "passed `loratui verify`" in (run_dir / "README.md").read_text(encoding="utf-8")


def _plant(src: Path, dst: Path, change) -> Path:
    with safe_open(str(src), framework="pt") as fh:
        metadata = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    change(tensors)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def test_planted_defects_are_named_by_key(exported, tmp_path):
    run_dir = exported[("tiny", True)]
    good = run_dir / f"{run_dir.name}.safetensors"
    module = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    te_module = "lora_te_text_model_encoder_layers_0_self_attn_v_proj"

    def rename(t):
        for suffix in (".alpha", ".lora_down.weight", ".lora_up.weight"):
            t[module.replace("attn1_to_q", "attn1_to_qq") + suffix] = t.pop(module + suffix)

    code, report = verify(_plant(good, tmp_path / "renamed.safetensors", rename), "--base-model", "tiny")
    assert code == 1
    [lost] = findings(report, "not_loaded")
    assert lost["keys"] == sorted(f"{module.replace('attn1_to_q', 'attn1_to_qq')}{s}"
                                  for s in (".alpha", ".lora_down.weight", ".lora_up.weight"))

    def wrong_alpha(t):
        t[te_module + ".alpha"] = torch.tensor(1.0, dtype=t[te_module + ".alpha"].dtype)

    code, report = verify(_plant(good, tmp_path / "alpha.safetensors", wrong_alpha), "--base-model", "tiny")
    assert code == 1
    assert [f["keys"] for f in report["findings"]] == [[te_module + ".alpha"]]
    assert "ss_network_alpha=4.0" in report["findings"][0]["message"]

    def nan(t):
        t[module + ".lora_up.weight"][0, 0] = float("nan")

    code, report = verify(_plant(good, tmp_path / "nan.safetensors", nan), "--base-model", "tiny")
    assert code == 1
    assert [(f["code"], f["keys"]) for f in report["findings"]] == [("non_finite", [module + ".lora_up.weight"])]


def test_an_sdxl_file_against_an_sd15_base_names_every_key(exported):
    run_dir = exported[("tiny-sdxl", True)]
    path = run_dir / f"{run_dir.name}.safetensors"
    code, report = verify(path, "--base-model", "tiny")
    assert code == 1
    with safe_open(str(path), framework="pt") as fh:
        keys = set(fh.keys())
    [lost] = findings(report, "not_loaded")
    misfit = {k for f in findings(report, "shape_mismatch") for k in f["keys"]}
    # the text encoders' lora_te1_/lora_te2_ keys have no SD-1.5 module, nor has SDXL's deeper
    # attention (transformer_blocks_1…9) or its third level; the few LDM names both share (at equal
    # tiny widths) would load, so the metadata check has to say it is the wrong model
    assert {k for k in keys if k.startswith(("lora_te1_", "lora_te2_"))} <= set(lost["keys"])
    assert {k for k in keys if re.search(r"transformer_blocks_[1-9]_|input_blocks_[78]_", k)} <= set(lost["keys"]) | misfit
    assert not set(lost["keys"]) - keys
    [mismatch] = findings(report, "base_model_mismatch")
    assert "SDXL" in mismatch["message"] and "SD-1.5" in mismatch["message"]


def test_the_ldm_walk_is_what_diffusers_converts_back():
    """Each UNet weight named by verify's LDM walk, converted by diffusers' single-file
    converter, comes back as the same diffusers weight (tiny: values; full size: keys)."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from loratui.engine.export.key_map import ldm_blocks, ldm_module
    from loratui.engine.families import FAMILIES
    from loratui.engine.families.tiny import tiny_model_dir

    folders = [tiny_model_dir(n) for n in ("tiny", "tiny-sd2", "tiny-sdxl")]
    folders += [f.shipped_config_dir() for f in FAMILIES.values()]
    for folder in folders:
        config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        full_size = config["block_out_channels"][0] >= 320
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(config)
        blocks = ldm_blocks(config)
        names = {}
        for i, (key, value) in enumerate(unet.state_dict().items()):
            module, _, leaf = key.rpartition(".")
            ldm = f"model.diffusion_model.{ldm_module(module, blocks)}.{leaf}"
            names[ldm] = key
        ids = {ldm: torch.full((1,), float(i)) for i, ldm in enumerate(names)}
        back = convert_ldm_unet_checkpoint(ids, dict(unet.config))
        assert set(back) == set(names.values()), folder
        if not full_size:
            by_id = {float(v.reshape(-1)[0]): k for k, v in back.items()}
            assert all(by_id[float(ids[ldm])] == key for ldm, key in names.items()), folder


@pytest.mark.parametrize("family_name", ["sd15", "sd2", "sdxl"])
def test_the_exporters_names_load_on_the_full_size_models(family_name, tmp_path):
    """A rank-1 LoRA on every module loratui trains in the real SD-1.5 / SD-2 / SDXL, named by
    the exporter, is recognised from its keys alone and maps completely."""
    import transformers
    from diffusers import UNet2DConditionModel

    from loratui.engine.export.lora_files import kohya_metadata, to_kohya
    from loratui.engine.families import FAMILIES

    family = FAMILIES[family_name]
    folder = family.shipped_config_dir()
    adapters: dict[str, dict] = {}
    with torch.device("meta"):
        models = {"unet": UNet2DConditionModel.from_config(
            json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8")))}
        for encoder in family.text_encoders:
            cls = getattr(transformers, family.module_classes[encoder].split(".")[1])
            models[encoder] = cls(cls.config_class.from_pretrained(folder / encoder))
    for component, model in models.items():
        targets = family.unet_targets if component == "unet" else family.text_targets
        state = {}
        for name, layer in model.named_modules():
            if isinstance(layer, torch.nn.Linear) and name.endswith(tuple(f".{t}" for t in targets)):
                state[f"{name}.lora_A.weight"] = torch.full((1, layer.in_features), 0.01)
                state[f"{name}.lora_B.weight"] = torch.full((layer.out_features, 1), 0.01)
        adapters[component] = state
    tensors = to_kohya(family, adapters, 1.0, "fp16")
    meta = kohya_metadata(network_dim=1, network_alpha=1.0, base_model_version=family.kohya_version)
    path = tmp_path / "full.safetensors"
    save_file(tensors, str(path), metadata=meta)
    code, report = verify(path)
    assert code == 0, report["findings"]
    assert report["family"] == family_name and report["family_from"] == "keys"
    assert len(report["modules"]) == sum(len(s) for s in adapters.values()) // 2
