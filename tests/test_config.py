"""Config layering, validation with one clear line, TOML round trip, lora-scripts YAML."""

from __future__ import annotations

import tomllib

import pytest

from loratui.engine.config import RunConfig, build_config, dump_toml, load_config_file
from loratui.engine.errors import ConfigError
from loratui.engine.planning.presets import PRESETS


@pytest.mark.parametrize(
    ("preset", "rank", "lr"), [("person", 16, 1.5e-4), ("style", 8, 1e-4), ("pet", 8, 2e-4)]
)
def test_presets_set_the_field_values(preset, rank, lr):
    cfg = build_config("photos", preset)
    assert (cfg.rank, cfg.lr, cfg.batch_size, cfg.resolution, cfg.save_every) == (rank, lr, 4, 512, 100)
    assert PRESETS[preset].rank == rank


def test_file_overrides_preset_and_flags_override_file():
    cfg = build_config("photos", "pet", file_values={"rank": 4, "lr": 5e-5}, overrides={"rank": 32, "lr": None})
    assert cfg.rank == 32  # the flag wins
    assert cfg.lr == 5e-5  # the file wins over the preset; an unset flag changes nothing


def test_bad_value_is_one_line_naming_key_and_source():
    with pytest.raises(ConfigError) as info:
        build_config("photos", "pet", overrides={"rank": 0})
    text = str(info.value)
    assert "\n" not in text and "--rank" in text and "rank = 0" in text and "greater than or equal to 1" in text


def test_bad_choice_lists_what_is_allowed(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('mixed_precision = "fp8"\n')
    with pytest.raises(ConfigError) as info:
        build_config("photos", file_values=load_config_file(path), file_label=str(path))
    assert str(path) in str(info.value) and "'bf16'" in str(info.value)


def test_unknown_key_is_refused(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("rnak = 4\n")
    with pytest.raises(ConfigError, match="unknown key 'rnak'"):
        build_config("photos", file_values=load_config_file(path), file_label=str(path))


def test_malformed_toml_is_one_clear_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("rank = = 4\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(path)


def test_toml_round_trip_reproduces_the_config(tmp_path):
    cfg = build_config("photos", "style", overrides={"trigger": "mystyle", "steps": 300, "alpha": 4.0})
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(cfg, {"total_steps": 300}))
    assert tomllib.loads(path.read_text())["resolved"]["total_steps"] == 300
    again = build_config(None, file_values=load_config_file(path))
    assert again == cfg


def test_lora_scripts_yaml_keys_map_to_ours(tmp_path):
    path = tmp_path / "lora.yaml"
    path.write_text(
        "train_data_dir: ./photos\nmetadata_path: ./photos/metadata.csv\nbase_model: ./model.safetensors\n"
        "lora_rank: 32\nbatch_size: 2\nepochs: 6\nlearning_rate: 0.0003\noutput_dir: ./out\nsave_steps: 50\n"
    )
    cfg = build_config(None, file_values=load_config_file(path), file_label=str(path))
    assert (cfg.dataset, cfg.rank, cfg.batch_size, cfg.epochs, cfg.lr, cfg.output_dir, cfg.save_every) == (
        "./photos", 32, 2, 6, 3e-4, "./out", 50
    )
    assert cfg.base_model == "./model.safetensors" and cfg.metadata_path == "./photos/metadata.csv"


def test_lora_scripts_yaml_unknown_key_names_it(tmp_path):
    path = tmp_path / "lora.yaml"
    path.write_text("train_data_dir: ./photos\nlora_rnak: 4\n")
    with pytest.raises(ConfigError, match="unknown key 'lora_rnak'"):
        load_config_file(path)


def test_trigger_with_comma_is_refused():
    with pytest.raises(ConfigError, match="trigger"):
        build_config("photos", overrides={"trigger": "a, b"})


def test_alpha_defaults_to_rank():
    assert RunConfig(dataset="x", rank=12).lora_alpha == 12.0
    assert RunConfig(dataset="x", rank=12, alpha=6).lora_alpha == 6.0
