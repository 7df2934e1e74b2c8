"""`loratui check`: find every problem in a dataset folder before any GPU time is spent.

Two passes. The header pass reads only what it must: the folder listing, image headers (size,
format, frame count), captions and, for files whose sizes collide, their bytes (exact
duplicates). The pixel pass then decodes each image once, shrunk to at most 512 px (JPEG
decodes straight to that size), for corruption, blur, exposure and the perceptual hash that
finds near duplicates. A bad file is a finding, never a crash; the scan goes on.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from loratui.engine.data.dataset import IMAGE_EXTENSIONS, METADATA_NAME, is_inside, read_metadata_csv, refuse_reason
from loratui.engine.data.images import image_size
from loratui.engine.data.masks import is_mask_name, masked_stem
from loratui.engine.errors import ConfigError, DatasetError, LoratuiError
from loratui.engine.data.lint_rules import (
    DEFAULT_THRESHOLDS,
    ERROR,
    OTHER_IMAGE_EXTENSIONS,
    RULES,
    WARNING,
    Thresholds,
    size_finding,
)
from loratui.engine.data.tags import has_trigger
from loratui.engine.hashing import file_sha256

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)
FOLDER_PATH = "."  # the path of findings about the whole folder


@dataclass(frozen=True)
class Finding:
    """One problem: which file (relative, POSIX), its stable code, severity and a sentence."""

    path: str
    code: str
    severity: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "severity": self.severity, "message": self.message}


@dataclass
class CheckReport:
    """What `check` found in a folder; ``to_json()`` is DESIGN.md's `check --json` structure."""

    folder: Path
    images: int
    findings: list[Finding]
    usable_images: int = 0
    captioned: int = 0
    preset: str | None = None
    trigger: str | None = None
    pixels_checked: bool = True

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when nothing blocks training (warnings are advice)."""
        return not self.errors

    def codes(self) -> dict[str, int]:
        """How many findings of each code, in the order the rules are listed."""
        counts: dict[str, int] = defaultdict(int)
        for f in self.findings:
            counts[f.code] += 1
        return {code: counts[code] for code in RULES if counts[code]}

    def summary(self) -> dict[str, Any]:
        verdict = "errors" if self.errors else ("warnings" if self.findings else "ok")
        return {
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "by_code": self.codes(),
            "usable_images": self.usable_images,
            "captioned": self.captioned,
            "preset": self.preset,
            "trigger": self.trigger,
            "pixels_checked": self.pixels_checked,
            "verdict": verdict,
        }

    def to_json(self) -> dict[str, Any]:
        """``{"folder", "images", "findings": [{path, code, severity, message}], "summary"}``."""
        return {
            "folder": str(self.folder),
            "images": self.images,
            "findings": [f.to_json() for f in self.findings],
            "summary": self.summary(),
        }


@dataclass
class _Image:
    path: Path
    rel: str
    size_bytes: int = 0
    width: int = 0
    height: int = 0
    readable: bool = True  # False once an error finding rules it out of training
    decodable: bool = False  # the header opened; the pixel pass may try it
    copy_of: str | None = None  # an exact duplicate of this earlier image
    phash: int | None = None


@dataclass
class _Scan:
    root: Path
    images: list[_Image] = field(default_factory=list)
    captions: dict[str, Path] = field(default_factory=dict)  # rel of .txt -> path
    masks: dict[str, Path] = field(default_factory=dict)  # rel of NAME.mask.png -> path
    findings: list[Finding] = field(default_factory=list)

    def add(self, path: str, code: str, message: str, severity: str | None = None) -> None:
        self.findings.append(Finding(path, code, severity or RULES[code].severity, message))


def check(
    folder: str | os.PathLike[str],
    preset: str | None = None,
    trigger: str | None = None,
    *,
    pixels: bool = True,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    on_progress: ProgressFn | None = None,
    workers: int | None = None,
) -> CheckReport:
    """Lint the dataset in ``folder``. ``pixels=False`` runs the header pass only.

    Raises DatasetError only when ``folder`` itself is unusable (missing, not a folder) and
    ConfigError for an unknown preset; every problem inside the folder is a Finding.
    """
    root = Path(folder)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder", "check the path")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder", "pass the folder that holds the images")
    if preset is not None and preset not in thresholds.preset_images:
        raise ConfigError(f"unknown preset {preset!r}", f"choose one of {', '.join(thresholds.preset_images)}")
    trigger = " ".join(trigger.split()) if trigger else None
    progress = on_progress or (lambda stage, done, total: None)

    scan = _Scan(root)
    _walk(scan)
    captions = _read_captions(scan)
    _header_pass(scan, thresholds, progress)
    _mask_checks(scan)
    _exact_duplicates(scan)
    if pixels:
        _pixel_pass(scan, thresholds, progress, workers or min(4, os.cpu_count() or 1))
        _near_duplicates(scan, thresholds)
    captioned = _caption_checks(scan, captions, trigger, thresholds)
    usable = sum(1 for im in scan.images if im.readable)
    _count_checks(scan, usable, preset, thresholds)

    order = {code: i for i, code in enumerate(RULES)}
    scan.findings.sort(key=lambda f: (f.severity != ERROR, order.get(f.code, len(order)), f.path))
    return CheckReport(
        folder=root,
        images=len(scan.images),
        findings=scan.findings,
        usable_images=usable,
        captioned=captioned,
        preset=preset,
        trigger=trigger,
        pixels_checked=pixels,
    )


# -- the folder listing -----------------------------------------------------------------------


def display_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by the OS as surrogates) as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _walk(scan: _Scan) -> None:
    root = scan.root

    def unreadable(exc: OSError) -> None:  # os.walk would skip the folder silently
        where = Path(exc.filename) if exc.filename else root
        rel = display_name(where.relative_to(root).as_posix()) if where != root else FOLDER_PATH
        scan.add(rel + ("/" if where != root else ""), "unreadable_folder",
                 f"cannot be read ({exc.strerror or exc}); none of its images are checked or trained")

    for dirpath, dirs, files in os.walk(root, onerror=unreadable, followlinks=False):
        base = Path(dirpath)
        kept_dirs = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            path = base / d
            if path.is_symlink():
                if not is_inside(path, root):
                    rel = display_name(path.relative_to(root).as_posix())
                    scan.add(rel + "/", "unsafe_path", f"a link to {_target(path)}, outside the folder; not read")
                continue  # links are never walked into: the training scan does not either
            kept_dirs.append(d)
        dirs[:] = kept_dirs
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = base / name
            rel_raw = path.relative_to(root).as_posix()
            rel = display_name(rel_raw)
            suffix = path.suffix.lower()
            relevant = suffix in IMAGE_EXTENSIONS or suffix == ".txt" or suffix in OTHER_IMAGE_EXTENSIONS
            if not relevant:
                continue
            if is_mask_name(name) and refuse_reason(path, root) is None:
                scan.masks[rel_raw] = path  # a loss mask (data/masks.py), checked with its image
                continue
            if rel != rel_raw:
                scan.add(rel, "non_utf8_filename", "its name has bytes that are not UTF-8")
            # the training scan's rule (dataset.refuse_reason): what it will not read, we do not
            reason = refuse_reason(path, root)
            if reason is not None and not is_inside(path, root):
                scan.add(rel, "unsafe_path", f"a link to {_target(path)}, outside the folder; not read")
                if suffix in IMAGE_EXTENSIONS:
                    scan.images.append(_Image(path, rel, readable=False))
                continue
            if suffix in IMAGE_EXTENSIONS:
                if reason is not None:
                    scan.add(rel, "not_an_image", reason)
                scan.images.append(_Image(path, rel, readable=reason is None))
            elif suffix == ".txt":
                if reason is not None:  # a FIFO caption would block the read forever
                    scan.add(rel, "unreadable_caption", reason)
                else:
                    scan.captions[rel_raw] = path
            else:
                scan.add(rel, "ignored_file", f"{suffix} files are not trained on (only {_formats()})")


def _target(link: Path) -> str:
    try:
        return display_name(os.readlink(link))
    except OSError:
        return "somewhere unknown"


def _formats() -> str:
    return ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))


# -- captions ---------------------------------------------------------------------------------


def _read_captions(scan: _Scan) -> dict[str, str]:
    """Each image's caption (sidecar wins over metadata.csv), with caption findings on the way."""
    root = scan.root
    captions: dict[str, str] = {}
    image_rels = {im.path.relative_to(root).as_posix() for im in scan.images}
    used_sidecars: set[str] = set()
    unreadable: set[str] = set()
    for im in scan.images:
        if not im.readable:
            continue
        sidecar_rel = im.path.with_suffix(".txt").relative_to(root).as_posix()
        sidecar = scan.captions.get(sidecar_rel)
        if sidecar is None:
            continue
        used_sidecars.add(sidecar_rel)
        if sidecar_rel in unreadable:
            continue
        try:
            captions[im.rel] = sidecar.read_bytes().decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            unreadable.add(sidecar_rel)
            scan.add(display_name(sidecar_rel), "unreadable_caption", "not UTF-8 text (saved in another encoding?)")
        except OSError as exc:
            unreadable.add(sidecar_rel)
            scan.add(display_name(sidecar_rel), "unreadable_caption", f"cannot be read ({exc.strerror or exc})")
    for rel_raw in scan.captions:
        if rel_raw not in used_sidecars:
            scan.add(display_name(rel_raw), "orphan_caption", "no image with this name beside it; it is unused")

    meta_path = root / METADATA_NAME
    if meta_path.is_file() or meta_path.is_symlink():
        if not is_inside(meta_path, root):
            scan.add(METADATA_NAME, "unsafe_path", "a link to a file outside the folder; not read")
            return captions
        try:
            metadata = read_metadata_csv(root)
        except (DatasetError, csv.Error, OSError) as exc:
            message = exc.message if isinstance(exc, DatasetError) else str(exc)
            scan.add(METADATA_NAME, "unreadable_caption", message.replace(str(meta_path) + ": ", ""))
            return captions
        display_for = {im.path.relative_to(root).as_posix(): im.rel for im in scan.images}
        for name, text in metadata.items():
            if _unsafe_name(name, root):
                scan.add(name, "unsafe_path", f"{METADATA_NAME} names a file outside the folder; ignored")
                continue
            clean = PurePosixPath(name).as_posix()
            if clean not in image_rels:
                scan.add(clean, "orphan_caption", f"{METADATA_NAME} has a caption for it, but there is no such image")
                continue
            rel = display_for[clean]
            if rel in captions or (root / clean).with_suffix(".txt").relative_to(root).as_posix() in unreadable:
                if rel in captions and captions[rel] != text:
                    scan.add(rel, "caption_conflict", f"{METADATA_NAME} has a different caption; the .txt wins")
                continue
            captions[rel] = text
    return captions


def _unsafe_name(name: str, root: Path) -> bool:
    """True for a metadata.csv file name that is absolute or climbs out of the folder."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
        return True
    return not is_inside(root / name, root)


def _caption_checks(scan: _Scan, captions: dict[str, str], trigger: str | None, t: Thresholds) -> int:
    from loratui.engine.families.clip_tokenizer import count_clip_tokens_batch

    root = scan.root
    unreadable = {f.path for f in scan.findings if f.code == "unreadable_caption"}
    texts: list[tuple[str, str]] = []
    unusable_captioned = 0  # an image ruled out still has its caption: the count says so
    for im in scan.images:
        if not im.readable:
            unusable_captioned += bool(captions.get(im.rel))
            continue
        caption = captions.get(im.rel)
        if caption is None:
            if display_name(im.path.with_suffix(".txt").relative_to(root).as_posix()) not in unreadable:
                scan.add(im.rel, "missing_caption", "no caption (.txt beside it or metadata.csv row)")
            continue
        if not caption:
            scan.add(im.rel, "empty_caption", "the caption is empty")
            continue
        seen = caption
        if trigger and not has_trigger(caption, trigger):
            scan.add(im.rel, "trigger_missing", f"the caption does not contain the trigger word {trigger!r}")
            seen = f"{trigger}, {caption}"  # what training will feed CLIP
        texts.append((im.rel, seen))
    counts = count_clip_tokens_batch([text for _, text in texts])
    for (rel, _), n in zip(texts, counts):
        if n > t.max_caption_tokens:
            scan.add(rel, "caption_too_long", f"{n} CLIP tokens; CLIP sees the first {t.max_caption_tokens}")
    return len(texts) + unusable_captioned


# -- the header pass --------------------------------------------------------------------------


def _header_pass(scan: _Scan, t: Thresholds, progress: ProgressFn) -> None:
    from PIL import Image, UnidentifiedImageError

    total = len(scan.images)
    for done, im in enumerate(scan.images, 1):
        if done % 100 == 0 or done == total:
            progress("headers", done, total)
        if not im.readable:
            continue
        try:
            im.size_bytes = im.path.stat().st_size
        except OSError as exc:
            im.readable = False
            scan.add(im.rel, "not_an_image", f"cannot be read ({exc.strerror or exc})")
            continue
        if im.size_bytes == 0:
            im.readable = False
            scan.add(im.rel, "not_an_image", "an empty file (0 bytes)")
            continue
        try:
            with warnings.catch_warnings():
                # Our own limit decides below; Pillow's would only warn or raise past 2x.
                warnings.simplefilter("ignore")
                with Image.open(im.path) as opened:
                    im.width, im.height = opened.size
                    animated = getattr(opened, "is_animated", False)
                    fmt = opened.format
        except Image.DecompressionBombError:
            im.readable = False
            scan.add(im.rel, "decompression_bomb", "its header claims hundreds of megapixels; not decoded")
            continue
        except UnidentifiedImageError:
            im.readable = False
            scan.add(im.rel, "not_an_image", f"not an image ({_sniff(im.path)})")
            continue
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            im.readable = False
            scan.add(im.rel, "corrupt_image", f"the header cannot be read ({_short(exc)})")
            continue
        finding = size_finding(im.width, im.height, t)  # the training scan's rule too
        if finding is not None and finding[0] == "decompression_bomb":
            im.readable = False
            scan.add(im.rel, finding[0], finding[2])
            continue
        im.decodable = True
        if animated:
            scan.add(im.rel, "animated_image", f"an animated {fmt}; only the first frame is trained")
        short = min(im.width, im.height)
        if finding is not None:
            code, severity, message = finding
            if severity == ERROR:
                im.readable = False
            scan.add(im.rel, code, message, severity)
        ratio = max(im.width, im.height) / max(1, short)
        if ratio > t.max_aspect_ratio:
            scan.add(im.rel, "extreme_aspect_ratio", f"{im.width}x{im.height} is {ratio:.1f}:1")


def _mask_checks(scan: _Scan) -> None:
    """Each NAME.mask.png: its image exists, it is that image's size, and it marks something."""
    from loratui.engine.data.masks import mask_problem

    by_stem = {im.rel.rsplit(".", 1)[0]: im for im in scan.images}
    for rel, path in sorted(scan.masks.items()):
        image = by_stem.get(masked_stem(rel))
        shown = display_name(rel)
        if image is None:
            scan.add(shown, "orphan_mask", "no image of that name beside it; it masks nothing")
            continue
        if not image.decodable:
            continue  # the image's own finding says it all
        try:
            problem = mask_problem(str(path), image.path, image_size(image.path))
        except LoratuiError as exc:
            problem = exc.message.split(": ", 1)[-1]
        if problem:
            scan.add(shown, "bad_mask", f"{problem}; {image.rel} is not trained while masks are on")


def _sniff(path: Path) -> str:
    """A guess at what a file that is not an image is, for the message."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return "unreadable"
    if head.startswith(b"%PDF"):
        return "a PDF"
    if head.lstrip()[:1] in (b"<",) and b"html" in head.lower():
        return "an HTML page, maybe a failed download"
    try:
        head.decode("utf-8")
        return "looks like text"
    except UnicodeDecodeError:
        return "unknown format"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:120]


def _exact_duplicates(scan: _Scan) -> None:
    """Same bytes: only files whose sizes collide are hashed, so this reads little."""
    by_size: dict[int, list[_Image]] = defaultdict(list)
    for im in scan.images:
        if im.decodable and im.size_bytes:
            by_size[im.size_bytes].append(im)
    for group in by_size.values():
        if len(group) < 2:
            continue
        by_hash: dict[str, list[_Image]] = defaultdict(list)
        for im in group:
            try:
                by_hash[file_sha256(im.path)].append(im)
            except OSError:
                continue
        for same in by_hash.values():
            for copy in same[1:]:
                scan.add(copy.rel, "duplicate", f"the same file as {same[0].rel}")
                copy.copy_of = same[0].rel



# -- the pixel pass ---------------------------------------------------------------------------


@dataclass
class _PixelResult:
    error: str | None = None
    sharpness: float = 0.0
    mean: float = 0.0
    shadows: float = 0.0
    highlights: float = 0.0
    phash: int | None = None


def _pixel_pass(scan: _Scan, t: Thresholds, progress: ProgressFn, workers: int) -> None:
    todo = [im for im in scan.images if im.decodable]
    total = len(todo)
    # Pillow and NumPy release the GIL while decoding and filtering, so threads use the cores.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (im, result) in enumerate(zip(todo, pool.map(lambda i: _analyse(i.path, t), todo)), 1):
            if done % 50 == 0 or done == total:
                progress("pixels", done, total)
            if result.error is not None:
                im.readable = False
                scan.add(im.rel, "corrupt_image", f"cannot be decoded ({result.error})")
                continue
            im.phash = result.phash
            if result.mean < t.dark_mean:
                # Darkness also flattens the Laplacian, so blur cannot be judged here: one finding.
                scan.add(im.rel, "too_dark", f"mean brightness {result.mean:.0f}/255 (under {t.dark_mean:.0f})")
                continue
            if result.sharpness < t.blur_variance:
                scan.add(im.rel, "blurry", f"sharpness {result.sharpness:.0f} (under {t.blur_variance:.0f})")
            if result.shadows > t.backlit_shadow_fraction and result.highlights > t.backlit_highlight_fraction:
                scan.add(
                    im.rel,
                    "too_dark",
                    f"backlit: {result.shadows:.0%} in deep shadow next to {result.highlights:.0%} blown out",
                )


def _analyse(path: Path, t: Thresholds) -> _PixelResult:
    """Decode ``path`` small and measure it. Never raises: a failure is ``error``."""
    try:
        import numpy as np

        grey = _load_grey(path, t.analysis_size)
        arr = np.asarray(grey, dtype=np.float32)
        return _PixelResult(
            sharpness=_sharpness(arr),
            mean=float(arr.mean()),
            shadows=float((arr < t.shadow_level).mean()),
            highlights=float((arr > t.highlight_level).mean()),
            phash=_phash(grey),
        )
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        return _PixelResult(error=_short(exc))


def _load_grey(path: Path, size: int):
    """The image as 8-bit grey, long side at most ``size``; alpha over white as training does."""
    import numpy as np
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("L", (size, size))  # decode at 1/2, 1/4 or 1/8 scale: far less work
            im.load()
            mode = im.mode
            if mode.startswith("I") or mode == "F":
                # 16- and 32-bit greys: scale to 8 bits by the range the file uses.
                arr = np.asarray(im, dtype=np.float32)
                top = 65535.0 if arr.max(initial=0) > 255 else 255.0
                grey = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
            elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                grey = Image.alpha_composite(white, rgba).convert("L")
            elif mode in ("L", "RGB"):
                grey = im.convert("L")
            else:  # CMYK, YCbCr, LAB, P, 1, ...
                grey = im.convert("RGB").convert("L")
    grey.thumbnail((size, size))
    return grey


def _sharpness(arr) -> float:
    """Variance of the Laplacian in the sharpest tiles (90th percentile of a 4x4 grid)."""
    import numpy as np

    if arr.shape[0] < 3 or arr.shape[1] < 3:
        return 0.0
    lap = arr[:-2, 1:-1] + arr[2:, 1:-1] + arr[1:-1, :-2] + arr[1:-1, 2:] - 4.0 * arr[1:-1, 1:-1]
    h, w = lap.shape
    if h < 32 or w < 32:
        return float(lap.var())
    rows = np.array_split(np.arange(h), 4)
    cols = np.array_split(np.arange(w), 4)
    tiles = [float(lap[r[0] : r[-1] + 1, c[0] : c[-1] + 1].var()) for r in rows for c in cols]
    return float(np.percentile(tiles, 90))


def _phash(grey) -> int:
    import imagehash

    bits = imagehash.phash(grey).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def _near_duplicates(scan: _Scan, t: Thresholds) -> None:
    """Groups of images whose perceptual hashes are within ``near_duplicate_distance`` bits."""
    import numpy as np

    hashed = [im for im in scan.images if im.readable and im.phash is not None and im.copy_of is None]
    if len(hashed) < 2:
        return
    hashes = np.array([im.phash for im in hashed], dtype=np.uint64)
    parent = list(range(len(hashed)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    distance_to: dict[int, tuple[int, int]] = {}
    block = 512  # rows at a time: 5,000 images never need more than a few MB
    for start in range(0, len(hashed), block):
        rows = hashes[start : start + block]
        dist = _popcount(rows[:, None] ^ hashes[None, :])
        for i, j in zip(*np.nonzero(dist <= t.near_duplicate_distance)):
            a, b = start + int(i), int(j)
            if b <= a:
                continue
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
            distance_to.setdefault(b, (a, int(dist[i, j])))
    for idx, im in enumerate(hashed):
        root = find(idx)
        if root != idx:
            first, d = distance_to.get(idx, (root, 0))
            scan.add(im.rel, "near_duplicate", f"looks like {hashed[first].rel} (hash distance {d})")


def _popcount(values):
    """Set bits per element of a uint64 array (NumPy 2 has it built in)."""
    import numpy as np

    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    as_bytes = values.reshape(values.shape + (1,)).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1)


# -- counts -----------------------------------------------------------------------------------


def _count_checks(scan: _Scan, usable: int, preset: str | None, t: Thresholds) -> None:
    low, high = t.preset_images[preset] if preset else (t.min_images, None)
    wanted = f"the {preset} preset wants {low}" + (f"-{high}" if high else "+") if preset else f"{low}+ is advised"
    if usable < t.min_images_error:
        scan.add(FOLDER_PATH, "too_few_images", f"{usable} usable images; {wanted}", ERROR)
    elif usable < max(low, t.min_images):
        scan.add(FOLDER_PATH, "too_few_images", f"{usable} usable images; {wanted}")
    elif preset and high and usable > high * t.too_many_factor:
        scan.add(FOLDER_PATH, "too_many_images_for_preset", f"{usable} images; {wanted}")
