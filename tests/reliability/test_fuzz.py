"""Fuzz harness (hypothesis) for the parsers that read what users hand loratui.

Each parser may answer arbitrary input only with its result or its own one-line error:
``load_config_file`` → dict | ConfigError, ``build_config`` → RunConfig | ConfigError,
``read_metadata_csv`` → dict[str, str] | DatasetError, ``read_sidecar`` → str | None |
DatasetError. Anything else (TypeError, RecursionError, csv.Error…) would reach the user as
an "internal error", so hypothesis shrinks it to a minimal failing input.

Runs in seconds by default; longer with ``LORATUI_FUZZ_EXAMPLES=20000 scripts/test
tests/reliability/test_fuzz.py``. Cases found by hand that a generator rarely reaches
(5000-deep nesting, a 200 KB CSV field) are pinned in test_inputs.py.
"""

from __future__ import annotations

import math
import os
import string
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loratui.engine.config import LORA_SCRIPTS_KEYS, RunConfig, build_config, dump_toml, load_config_file
from loratui.engine.data.dataset import read_metadata_csv, read_sidecar
from loratui.engine.errors import ConfigError, DatasetError

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("LORATUI_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- strategies -------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 4096),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["person", "style", "pet", "tiny", "512,512", "1e-4", "", " ", "../../etc"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)
our_keys = st.sampled_from(sorted(RunConfig.model_fields))
config_dicts = st.dictionaries(st.one_of(our_keys, st.text(max_size=12)), values, max_size=8)
flag_dicts = st.dictionaries(our_keys, values, max_size=6)  # CLI flags: only our own key names

# text dense in each format's syntax, so the parsers see near-misses, not only noise
toml_text = st.one_of(
    st.text(alphabet=string.ascii_letters[:6] + "_=[]{}\"'#.,:-+ 0123\n\t\\", max_size=120),
    st.text(max_size=80),
)
yaml_text = st.one_of(
    st.text(alphabet=string.ascii_letters[:6] + "_:-[]{}\"'#!&*|>?%@,. 0123\n\t", max_size=120),
    st.text(max_size=80),
)
csv_cells = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["filename", "prompt", "caption", "text", '"', '""', "\r", "\n", ",", "a.png", "../x.png", "\\b.png"])
csv_text = st.lists(st.lists(csv_cells, max_size=5), max_size=6).map(
    lambda rows: "\r\n".join(",".join(row) for row in rows))
csv_bytes = st.one_of(
    st.binary(max_size=300),
    csv_text.map(lambda t: t.encode("utf-8")),
    csv_text.map(lambda t: b"\xef\xbb\xbf" + t.encode("utf-8")),  # Excel's BOM
    csv_text.map(lambda t: ("filename,prompt\n" + t).encode("utf-8")),
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- config files -----------------------------------------------------------------------

def _load(folder: Path, name: str, data: bytes):
    path = folder / name
    path.write_bytes(data)
    try:
        loaded = load_config_file(path)
    except ConfigError as exc:
        assert str(exc).strip() and "\n" not in exc.message
        return None
    assert isinstance(loaded, dict)
    return loaded


@FUZZ
@given(text=toml_text)
@example(text="a = [[[1]]]\n[t]\nb = {c = 1}")
@example(text="resolved = 1\nrank = 4")
def test_toml_config_text_gives_a_dict_or_a_config_error(scratch, text):
    _load(scratch, "fuzz.toml", text.encode("utf-8"))


@FUZZ
@given(data=st.binary(max_size=200))
def test_config_bytes_give_a_dict_or_a_config_error(scratch, data):
    for name in ("fuzz.toml", "fuzz.yaml"):
        _load(scratch, name, data)


@FUZZ
@given(text=yaml_text)
@example(text="? [a]\n: 1")
@example(text="a: &x [*x]")
@example(text="resolution: 512,512\nlora_rank: 8")
def test_yaml_config_text_gives_a_dict_or_a_config_error(scratch, text):
    loaded = _load(scratch, "fuzz.yaml", text.encode("utf-8"))
    if loaded is not None:
        assert set(loaded) <= set(LORA_SCRIPTS_KEYS.values())  # only keys we know


@FUZZ
@given(mapping=st.dictionaries(st.sampled_from(sorted(LORA_SCRIPTS_KEYS)), values, max_size=6))
def test_lora_scripts_yaml_with_any_values_gives_a_dict_or_a_config_error(scratch, mapping):
    import yaml

    _load(scratch, "fuzz.yaml", yaml.safe_dump(mapping, allow_unicode=True).encode("utf-8"))


# --- build_config ------------------------------------------------------------------------

@FUZZ
@given(
    file_values=config_dicts,
    overrides=flag_dicts,
    preset=st.one_of(st.none(), st.sampled_from(["person", "style", "pet", "nope", ""])),
    dataset=st.one_of(st.none(), st.text(max_size=20)),
)
@example(file_values={"preset": ["pet"]}, overrides={}, preset=None, dataset="x")
@example(file_values={"lr": math.nan, "rank": 10**30}, overrides={}, preset=None, dataset="x")
def test_build_config_gives_a_valid_run_config_or_a_config_error(file_values, overrides, preset, dataset):
    try:
        config = build_config(dataset, preset, file_values, "fuzz.toml", overrides)
    except ConfigError as exc:
        assert str(exc).strip() and "\n" not in exc.message
        return
    assert isinstance(config, RunConfig)
    # valid means: it survives the trip through config.toml that --resume makes
    again = build_config(None, file_values=tomllib.loads(dump_toml(config)), file_label="config.toml")
    assert again == config


# --- dataset files -----------------------------------------------------------------------

@FUZZ
@given(data=csv_bytes)
@example(data=b"\xef\xbb\xbffilename,prompt\r\na.png,hello\r\nb.png\r\n")
@example(data=b'filename,prompt\n"a.png,"x\n')
@example(data=b"filename,prompt\na\x00.png,x\n")
def test_metadata_csv_bytes_give_captions_or_a_dataset_error(scratch, data):
    (scratch / "metadata.csv").write_bytes(data)
    try:
        captions = read_metadata_csv(scratch)
    except DatasetError as exc:
        assert "\n" not in exc.message
        return
    assert isinstance(captions, dict)
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in captions.items())


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=100).map(lambda t: t.encode("utf-8")))
@example(data=b"\xef\xbb\xbf  zxq, a cat \n")
@example(data="zxq".encode("utf-16"))
def test_caption_bytes_give_a_caption_or_a_dataset_error(scratch, data):
    image = scratch / "x.png"
    image.with_suffix(".txt").write_bytes(data)
    try:
        caption = read_sidecar(image)
    except DatasetError as exc:
        assert "x.txt" in exc.message
        return
    assert isinstance(caption, str) and caption == caption.strip()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        with pytest.raises(DatasetError):
            read_sidecar(image)
        return
    assert caption == text.strip()


@pytest.mark.parametrize("data", [b"\xef", b"\xef\xbb"])
def test_a_truncated_bom_caption_is_not_utf8(scratch, data):
    image = scratch / "bom.png"
    image.with_suffix(".txt").write_bytes(data)
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_sidecar(image)
