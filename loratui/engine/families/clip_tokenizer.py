"""The real CLIP ViT-L/14 tokenizer (the one SD-1.5 uses), built offline from a vendored file.

No tokenizer can be downloaded in development, CI or on an offline GPU box, but OpenAI's BPE
merge list ships with loratui (``loratui/configs/clip``, MIT, see its NOTICE). From it we
derive the usual Hugging Face tokenizer folder (``vocab.json``, ``merges.txt``, the tokenizer
config with SD-1.5's special tokens, and a ``tokenizer.json`` for the fast path) in the user
cache, once. ``CLIPTokenizer.from_pretrained(clip_tokenizer_dir())`` then gives the same ids
as ``openai/clip-vit-large-patch14``.
"""

from __future__ import annotations

import functools
import gzip
import json
import shutil
import tempfile
from collections.abc import Sequence
from importlib import resources
import threading
from pathlib import Path

from loratui.engine.paths import cache_dir

# Bump when the files written below change, so an old cache folder is rebuilt, not trusted.
TOKENIZER_VERSION = 1
VOCAB_GZ = "bpe_simple_vocab_16e6.txt.gz"
MODEL_MAX_LENGTH = 77  # 75 tokens of text between <|startoftext|> and <|endoftext|>
TEXT_TOKENS = MODEL_MAX_LENGTH - 2
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# CLIP's vocabulary is 49408: 512 byte tokens, 48894 merges and the two special tokens.
VOCAB_SIZE = 49408
N_MERGES = VOCAB_SIZE - 512 - 2
REQUIRED_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")

# SD-1.5's tokenizer (openai/clip-vit-large-patch14): pad and unk are <|endoftext|>.
TOKENIZER_CONFIG = {
    "tokenizer_class": "CLIPTokenizer",
    "model_max_length": MODEL_MAX_LENGTH,
    "bos_token": BOS,
    "eos_token": EOS,
    "pad_token": EOS,
    "unk_token": EOS,
    "do_lower_case": True,
    "errors": "replace",
    "add_prefix_space": False,
    "clean_up_tokenization_spaces": True,
}
SPECIAL_TOKENS_MAP = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}


def vendored_vocab_path() -> Path:
    """Where the vendored CLIP BPE file lies inside the installed package."""
    return Path(str(resources.files("loratui") / "configs" / "clip" / VOCAB_GZ))


def clip_tokenizer_dir() -> Path:
    """The CLIP ViT-L/14 tokenizer folder in the user cache, built first if missing or partial."""
    target = cache_dir() / f"clip-vit-large-patch14-tokenizer-v{TOKENIZER_VERSION}"
    if not all((target / name).is_file() for name in REQUIRED_FILES):
        with _BUILD_LOCK:  # two threads (the wizard's lint workers) must not build at once
            if not all((target / name).is_file() for name in REQUIRED_FILES):
                build_clip_tokenizer(target)
    return target


_BUILD_LOCK = threading.Lock()


def build_clip_tokenizer(target: Path) -> Path:
    """Write the tokenizer folder to ``target``: built in a temp folder, then renamed into place.

    A reader never sees a half-written folder; two processes building at once both succeed
    (the loser of the rename race finds the winner's identical folder).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".clip-tok-", dir=target.parent))
    try:
        vocab, merges = _vocab_and_merges(vendored_vocab_path())
        (staging / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (staging / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        (staging / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2), encoding="utf-8")
        (staging / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=2), encoding="utf-8")
        from transformers import CLIPTokenizer

        # The fast tokenizer's own serialisation: counting tokens then needs only `tokenizers`.
        tokenizer = CLIPTokenizer(
            str(staging / "vocab.json"), str(staging / "merges.txt"), model_max_length=MODEL_MAX_LENGTH
        )
        tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        if target.exists():
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not all((target / name).is_file() for name in REQUIRED_FILES):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte alphabet in CLIP's order: printable bytes first, the rest mapped past U+0100.

    The order matters: it fixes the ids of the 512 byte tokens ("a</w>" is 320).
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = list(printable)
    order = list(printable)
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            order.append(byte)
            codes.append(256 + shifted)
            shifted += 1
    return dict(zip(order, (chr(c) for c in codes)))


def _vocab_and_merges(gz_path: Path) -> tuple[dict[str, int], list[str]]:
    """The vocabulary and merge list exactly as OpenAI's ``simple_tokenizer`` builds them."""
    lines = gzip.decompress(gz_path.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]  # the first line is the file's version header
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise RuntimeError(f"{gz_path}: not the CLIP BPE vocabulary (reinstall loratui)")
    return {tok: i for i, tok in enumerate(tokens)}, merges


@functools.lru_cache(maxsize=1)
def _fast_tokenizer():
    # `tokenizers` alone imports in milliseconds; transformers takes a second or more.
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(clip_tokenizer_dir() / "tokenizer.json"))


def count_clip_tokens(text: str) -> int:
    """How many CLIP tokens ``text`` is, not counting the start and end tokens (CLIP sees 75)."""
    return count_clip_tokens_batch([text])[0]


def count_clip_tokens_batch(texts: Sequence[str]) -> list[int]:
    """``count_clip_tokens`` for many texts at once (the Rust tokenizer runs them in parallel)."""
    if not texts:
        return []
    encodings = _fast_tokenizer().encode_batch(list(texts), add_special_tokens=False)
    return [len(e.ids) for e in encodings]
