"""Auto-captioning backends behind one small interface.

- ``blip``: a sentence per image from a BLIP captioning model (transformers); ``--model`` is a
  local folder or a hub id (default Salesforce/blip-image-captioning-base).
- ``tagger``: booru-style tags from a multi-label image classifier (transformers
  ``AutoModelForImageClassification``, sigmoid scores over ``id2label``), as WD14-style
  taggers produce; ``--model`` names the classifier.
- ``filename``: words from the file name; needs no model, for when none can be had.

A model that cannot be found is one ModelError saying how to get it. Models load with
``local_files_only`` first, so an offline machine never waits on the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loratui.engine.errors import DatasetError, ModelError

BLIP_DEFAULT = "Salesforce/blip-image-captioning-base"
TAG_THRESHOLD = 0.35  # the WD14 taggers' customary cut-off for general tags
RATING_TAGS = frozenset({"general", "sensitive", "questionable", "explicit", "safe"})


class Captioner(Protocol):
    """Turns a batch of images into one caption each."""

    name: str
    batch_size: int
    needs_pixels: bool  # False: ``caption`` gets None for every image (no decoding)

    def caption(self, images: Sequence[Any], paths: Sequence[Path]) -> list[str]: ...


@dataclass(frozen=True)
class Captioned:
    """One image's outcome: its caption, or why it got none."""

    path: Path
    caption: str | None
    error: str | None = None


def captioner_names() -> list[str]:
    """The backends ``load_captioner`` knows."""
    return list(_FACTORIES)


def load_captioner(name: str, model: str | None = None, device: str | None = None) -> Captioner:
    """The captioner called ``name`` with its model loaded (ModelError if it cannot be)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ModelError(f"unknown captioner {name!r}", f"choose one of {', '.join(_FACTORIES)}") from None
    return factory(model, device)


def caption_paths(
    captioner: Captioner,
    paths: Sequence[Path],
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[Captioned]]:
    """Caption ``paths`` a batch at a time; a file that cannot be read is skipped, not fatal."""
    from loratui.engine.data.images import open_rgb

    total = len(paths)
    done = 0
    for start in range(0, total, captioner.batch_size):
        batch = list(paths[start : start + captioner.batch_size])
        results: list[Captioned] = []
        ok_paths: list[Path] = []
        images: list[Any] = []
        for path in batch:
            if not captioner.needs_pixels:
                ok_paths.append(path)
                images.append(None)
                continue
            try:
                images.append(open_rgb(path))
                ok_paths.append(path)
            except DatasetError as exc:
                results.append(Captioned(path, None, exc.message))
        if ok_paths:
            texts = captioner.caption(images, ok_paths)
            results.extend(Captioned(p, t.strip() or None, None if t.strip() else "no caption produced")
                           for p, t in zip(ok_paths, texts))
        done += len(batch)
        if on_progress:
            on_progress(done, total)
        yield results


# -- filename ---------------------------------------------------------------------------------

_CAMERA_NAMES = re.compile(r"^(img|dsc|dscn|dscf|pxl|mvimg|photo|image|screenshot|p)$", re.IGNORECASE)


class FilenameCaptioner:
    """Words from the file name: ``red_fox-in snow_03.jpg`` → ``red fox in snow``."""

    name = "filename"
    batch_size = 64
    needs_pixels = False

    def caption(self, images: Sequence[Any], paths: Sequence[Path]) -> list[str]:
        return [self.words(p) for p in paths]

    @staticmethod
    def words(path: Path) -> str:
        """The caption a file name gives (camera prefixes, numbers and dates dropped)."""
        parts = re.split(r"[\s_\-.,()\[\]+]+", path.stem)
        kept = [w for w in parts if w and not any(c.isdigit() for c in w) and not _CAMERA_NAMES.match(w)]
        return " ".join(kept)


# -- BLIP -------------------------------------------------------------------------------------


class BlipCaptioner:
    """A sentence per image from a BLIP image-captioning model."""

    name = "blip"
    needs_pixels = True

    def __init__(self, model: str | None, device: str | None, batch_size: int = 8, max_new_tokens: int = 40) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        source = model or BLIP_DEFAULT
        self.processor = _load(BlipProcessor, source, "blip")
        self.model = _load(BlipForConditionalGeneration, source, "blip")
        self.device = device or _default_device()
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def caption(self, images: Sequence[Any], paths: Sequence[Path]) -> list[str]:
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False)
        return [_tidy(t) for t in self.processor.batch_decode(out, skip_special_tokens=True)]


def _tidy(text: str) -> str:
    # BLIP often starts with "arafed"/"there is" fillers; keep it simple: one line, no padding.
    return " ".join(text.split())


# -- tagger -----------------------------------------------------------------------------------


class TaggerCaptioner:
    """Booru-style tags from a multi-label image classifier (WD14-style taggers)."""

    name = "tagger"
    needs_pixels = True

    def __init__(
        self, model: str | None, device: str | None, batch_size: int = 8, threshold: float = TAG_THRESHOLD
    ) -> None:
        if not model:
            raise ModelError(
                "the tagger captioner needs --model: a multi-label image-classification model "
                "(a local folder or a hub id, e.g. a transformers port of a WD14 tagger)",
                "or use --captioner blip, or --captioner filename which needs no model",
            )
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.processor = _load(AutoImageProcessor, model, "tagger")
        self.model = _load(AutoModelForImageClassification, model, "tagger")
        labels = getattr(self.model.config, "id2label", None) or {}
        self.labels = [str(labels.get(i, labels.get(str(i), ""))) for i in range(self.model.config.num_labels)]
        self.device = device or _default_device()
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.threshold = threshold

    def caption(self, images: Sequence[Any], paths: Sequence[Path]) -> list[str]:
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            scores = torch.sigmoid(self.model(**inputs).logits.float()).cpu()
        captions = []
        for row in scores:
            order = torch.argsort(row, descending=True).tolist()
            tags = [
                _tag_text(self.labels[i])
                for i in order
                if row[i] >= self.threshold and self.labels[i] and not _is_rating(self.labels[i])
            ]
            captions.append(", ".join(tags))
        return captions


def _is_rating(label: str) -> bool:
    return label.lower() in RATING_TAGS or label.lower().startswith("rating:")


def _tag_text(label: str) -> str:
    # As kohya's WD14 script: underscores become spaces, except in short emoticons like ^_^.
    return label.replace("_", " ") if len(label) > 3 else label


# -- loading ----------------------------------------------------------------------------------


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_like_path(source: str) -> bool:
    # A hub id is "name" or "org/name"; anything else is meant as a folder.
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def _load(cls: Any, source: str, captioner: str) -> Any:
    """``cls.from_pretrained(source)``: the local cache first, the hub only when allowed."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our progress bar is the one the user watches
    hf_logging.disable_progress_bar()
    path = Path(source).expanduser()
    if path.exists() or _looks_like_path(source):
        if not path.is_dir():
            raise ModelError(
                f"{path}: no such model folder for the {captioner} captioner",
                "pass a folder saved with save_pretrained, or a hub id",
            )
        try:
            return cls.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"{path}: not a {captioner} model folder ({_first_line(exc)})",
                "pass the folder that holds config.json and the weights",
            ) from None
    try:
        return cls.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if not offline:
        try:
            return cls.from_pretrained(source)
        except (OSError, ValueError):
            pass
    raise ModelError(
        f"the {captioner} model {source!r} is not downloaded and cannot be fetched here",
        f"run `huggingface-cli download {source}` on a machine with internet (or copy that folder here and "
        "pass --model PATH), or use --captioner filename, which needs no model",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else exc.__class__.__name__


_FACTORIES: dict[str, Callable[[str | None, str | None], Captioner]] = {
    "blip": lambda model, device: BlipCaptioner(model, device),
    "tagger": lambda model, device: TaggerCaptioner(model, device),
    "filename": lambda model, device: FilenameCaptioner(),
}
