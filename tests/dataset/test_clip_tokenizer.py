"""The vendored CLIP tokenizer: the real ids, a normal HF folder, counts that match it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loratui.engine.families.clip_tokenizer import clip_tokenizer_dir, count_clip_tokens, count_clip_tokens_batch

TEXTS = [
    "a photo of a cat",
    "sks, 1girl, solo, long_hair, looking at viewer, (masterpiece:1.2)",
    "Ein Foto von einer Katze – café, naïve, 猫, 😀",
    "  spaces\tand\nnewlines  ",
    "",
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(clip_tokenizer_dir()))


def test_known_ids_of_sd15_tokenizer(hf_tokenizer):
    assert hf_tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(hf_tokenizer) == 49408
    assert hf_tokenizer.model_max_length == 77
    assert hf_tokenizer.bos_token_id == 49406 and hf_tokenizer.eos_token_id == hf_tokenizer.pad_token_id == 49407
    padded = hf_tokenizer("a cat", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[-1] == 49407


def test_folder_is_a_normal_tokenizer_folder():
    folder = clip_tokenizer_dir()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 77 and config["pad_token"] == "<|endoftext|>"
    vocab = json.loads((folder / "vocab.json").read_text())
    assert vocab["a</w>"] == 320 and vocab["<|startoftext|>"] == 49406
    merges = (folder / "merges.txt").read_text().splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894


def test_counts_match_the_transformers_tokenizer(hf_tokenizer):
    expected = [len(hf_tokenizer(t).input_ids) - 2 for t in TEXTS]
    assert count_clip_tokens_batch(TEXTS) == expected
    assert count_clip_tokens("a photo of a cat") == 5
    assert count_clip_tokens_batch([]) == []


def test_a_missing_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("LORATUI_CACHE_DIR", str(tmp_path))
    folder = clip_tokenizer_dir()
    (folder / "merges.txt").unlink()
    assert clip_tokenizer_dir() == folder and (folder / "merges.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_engine_imports_no_ui_and_nothing_heavy():
    code = (
        "import sys; import loratui.engine.data.lint, loratui.engine.data.lint_rules, loratui.engine.data.tags, "
        "loratui.engine.families.clip_tokenizer; "
        "import importlib.util as u; [__import__(m) for m in ('loratui.engine.data.captionstore', "
        "'loratui.engine.data.captioners') if u.find_spec(m)]; "
        "print(sorted(m for m in ('textual', 'rich', 'typer', 'torch', 'transformers') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
