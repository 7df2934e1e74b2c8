"""Auto-captioning: tiny randomly initialised BLIP and tagger models, built here from configs,
run through the real code path (transformers loading, preprocessing, generation, the store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from dataset_corpus import pattern, save
from typer.testing import CliRunner

from loratui import dataset_commands

from loratui.engine.data.captioners import FilenameCaptioner, caption_paths, load_captioner
from loratui.engine.data.captionstore import CaptionStore
from loratui.engine.errors import ModelError

BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "cat", "dog", "on", "sofa"]
TAGS = ["general", "1girl", "red_hair", "smile", "^_^", "outdoors", "rating:safe"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder = tmp_path_factory.mktemp("tiny-blip")
    (folder / "vocab.txt").write_text("\n".join(BLIP_WORDS) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(BLIP_WORDS), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=64, bos_token_id=5, sep_token_id=3,
            pad_token_id=0, eos_token_id=3,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
        ),
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_tagger(tmp_path_factory) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    folder = tmp_path_factory.mktemp("tiny-tagger")
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
        num_attention_heads=2, num_labels=len(TAGS), id2label=dict(enumerate(TAGS)),
        label2id={t: i for i, t in enumerate(TAGS)}, problem_type="multi_label_classification",
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def run_in_process(*args: str):
    """The commands mounted on a throwaway Typer app, run in this process (no import cost)."""
    app = typer.Typer()
    dataset_commands.register(app)
    return CliRunner().invoke(app, list(args))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "loratui", *args], capture_output=True, text=True, env=env, timeout=180)


def make_images(folder: Path, n: int) -> list[Path]:
    return [save(pattern(300 + i, (96, 64)), folder / f"img_{i}.png") for i in range(n)]


@pytest.mark.slow  # builds and runs a BLIP model
def test_caption_cli_with_tiny_blip_end_to_end(tiny_blip, tmp_path):
    images = make_images(tmp_path, 4)
    images[0].with_suffix(".txt").write_text("my own words")  # must never be overwritten
    (tmp_path / "broken.png").write_text("not an image")
    proc = run_cli("caption", str(tmp_path), "--model", str(tiny_blip), "--trigger", "sks")
    assert proc.returncode == 0, proc.stderr
    assert "Captioned 4 images" in proc.stdout  # three images, and broken.png gets the trigger
    assert images[0].with_suffix(".txt").read_text() == "my own words"
    for img in images[1:]:
        text = img.with_suffix(".txt").read_text()
        words = text.split(", ", 1)
        assert words[0] == "sks" and len(words) == 2
        assert set(words[1].split()) <= set(BLIP_WORDS[6:])  # the model's own vocabulary
    assert (tmp_path / "broken.txt").read_text() == "sks"
    again = run_in_process("caption", str(tmp_path), "--model", str(tiny_blip))
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    # --overwrite replaces, and the store can undo it
    over = run_in_process("caption", str(tmp_path), "--model", str(tiny_blip), "--overwrite")
    assert over.exit_code == 0, over.output
    assert images[0].with_suffix(".txt").read_text() != "my own words"
    store = CaptionStore(tmp_path)
    assert store.history()[-1] == "auto-caption (blip) batch 1"
    store.undo()
    assert images[0].with_suffix(".txt").read_text() == "my own words"


def test_tagger_gives_booru_tags_without_ratings(tiny_tagger, tmp_path):
    images = make_images(tmp_path, 3)
    tagger = load_captioner("tagger", str(tiny_tagger), device="cpu")
    tagger.threshold = 0.0  # every tag scores above 0: all but the ratings come out
    [batch] = list(caption_paths(tagger, images))
    for r in batch:
        tags = r.caption.split(", ")
        assert sorted(tags) == sorted(["1girl", "red hair", "smile", "^_^", "outdoors"])
    tagger.threshold = 1.01
    [batch] = list(caption_paths(tagger, images))
    assert all(r.caption is None and r.error for r in batch)


def test_filename_captioner_needs_no_model(tmp_path):
    assert FilenameCaptioner.words(Path("red_fox-in snow_03.jpg")) == "red fox in snow"
    assert FilenameCaptioner.words(Path("IMG_20240101_1234.jpg")) == ""
    make_images(tmp_path, 1)
    save(pattern(1, (64, 64)), tmp_path / "golden retriever (puppy).png")
    result = run_in_process("caption", str(tmp_path), "--captioner", "filename")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "golden retriever (puppy).txt").read_text() == "golden retriever puppy"
    assert not (tmp_path / "img_0.txt").exists() and "skipped img_0.png" in result.stdout


def test_missing_models_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_images(tmp_path, 1)
    result = run_in_process("caption", str(tmp_path), "--model", str(tmp_path / "no-such-model"))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "no such model folder" in result.stderr
    result = run_in_process("caption", str(tmp_path), "--captioner", "tagger")
    assert result.exit_code == 1 and "needs --model" in result.stderr
    result = run_in_process("caption", str(tmp_path), "--captioner", "clip")
    assert result.exit_code == 1 and "unknown captioner" in result.stderr
    with pytest.raises(ModelError, match="not a tagger model folder"):
        load_captioner("tagger", str(tmp_path))
    # the default BLIP, offline and not downloaded: a real process, one line, how to get it
    proc = run_cli("caption", str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "huggingface-cli download Salesforce/blip-image-captioning-base" in proc.stderr
