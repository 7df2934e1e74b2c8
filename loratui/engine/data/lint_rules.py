"""What `loratui check` looks for: every finding code, its severity and fix, and the thresholds.

All the numbers live here, each with the reason for it, so tuning the lint is one edit.
Codes are stable (DESIGN.md): add new ones, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    """One kind of finding: its usual severity, a short title and the fix shown to the user."""

    code: str
    severity: str
    title: str
    fix: str


_RULES = [
    Rule("not_an_image", ERROR, "not an image", "delete the file, or re-export it in the format its extension names"),
    Rule("corrupt_image", ERROR, "corrupt or truncated image", "re-export or re-download it, or delete it"),
    Rule("decompression_bomb", ERROR, "far too many pixels", "downscale it (a few megapixels is plenty) or delete it"),
    Rule("too_small", WARNING, "too small", "use a larger original; training upscales it and learns the blur"),
    Rule("extreme_aspect_ratio", WARNING, "extreme aspect ratio", "crop it closer to the subject (within 2.5:1)"),
    Rule("duplicate", WARNING, "exact duplicate", "delete the copies; each one repeats the same image"),
    Rule("near_duplicate", WARNING, "near duplicate", "keep the best of each group; similar shots overweight one look"),
    Rule("blurry", WARNING, "blurry", "replace it with a sharp photo, or delete it"),
    Rule("too_dark", WARNING, "too dark or backlit", "brighten it, or use a better-lit photo"),
    Rule("animated_image", WARNING, "animated", "only the first frame is trained; export the frame you want"),
    Rule("missing_caption", WARNING, "no caption", "run `loratui caption FOLDER`, or write the .txt beside the image"),
    Rule("empty_caption", WARNING, "empty caption", "write a caption, or run `loratui caption FOLDER --overwrite`"),
    Rule("orphan_caption", WARNING, "caption without an image", "delete it, or put its image back beside it"),
    Rule("caption_conflict", WARNING, "two different captions", "make metadata.csv agree with the .txt, or delete one"),
    Rule("unreadable_caption", ERROR, "caption is not UTF-8 text", "re-save it as UTF-8"),
    Rule("caption_too_long", WARNING, "caption over CLIP's 75 tokens", "shorten it; CLIP never sees the rest"),
    Rule("trigger_missing", WARNING, "trigger word missing", "run `loratui caption FOLDER --trigger WORD` or add it by hand"),
    Rule("unsafe_path", ERROR, "outside the dataset folder", "copy the file into the folder instead of linking to it"),
    Rule("unreadable_folder", ERROR, "folder cannot be read", "fix its permissions (chmod a+rx), or move the images out of it"),
    Rule("non_utf8_filename", WARNING, "file name is not UTF-8", "rename it; other tools and metadata.csv cannot name it"),
    Rule("ignored_file", WARNING, "not a trainable format", "convert it to PNG or JPEG if it should be trained on"),
    Rule("orphan_mask", WARNING, "mask without an image", "delete it, or name it after its image (NAME.mask.png)"),
    Rule("bad_mask", ERROR, "mask cannot be used", "re-export it as a greyscale PNG the size of its image, white on the subject"),
    Rule("too_few_images", WARNING, "too few images", "add more varied photos of the subject"),
    Rule("too_many_images_for_preset", WARNING, "more images than the preset wants", "keep the best ones"),
]
RULES: dict[str, Rule] = {r.code: r for r in _RULES}


@dataclass(frozen=True)
class Thresholds:
    """The lint's numbers. Tests and callers may pass their own; the defaults are the advice."""

    # kohya guides and the community agree: under ~15 images a LoRA memorises the few poses it
    # sees; under 5 it cannot learn a subject at all, so that is an error, not advice.
    min_images: int = 15
    min_images_error: int = 5
    # How many images each preset wants (the field's advice): people 30-50, pets 15-40,
    # styles 100+. Past twice the upper bound the extra images mostly add near-duplicate
    # steps; a style has no upper bound.
    preset_images: dict[str, tuple[int, int | None]] = field(
        default_factory=lambda: {"person": (30, 50), "pet": (15, 40), "style": (100, None)}
    )
    too_many_factor: float = 2.0
    # SD-1.5 trains at 512 px: a shorter side is upscaled and the LoRA learns the softness.
    # Under 256 px there is too little detail to learn anything, so it is an error.
    min_short_side: int = 512
    min_short_side_error: int = 256
    # Aspect-ratio buckets reach about 1:2.5 before the centre crop cuts the subject off.
    max_aspect_ratio: float = 2.5
    # Pillow's own warning limit (~89.5 MP, a 9459x9459 image). Past it, decoding can take
    # gigabytes of RAM, and no camera photo is that large; the header alone tells us.
    max_pixels: int = 89_478_485
    # Hamming distance between 64-bit perceptual hashes: 0-4 is the same shot re-encoded,
    # resized or slightly cropped; 6+ already catches different poses of one subject.
    near_duplicate_distance: int = 4
    # Variance of the Laplacian of the sharpest part of the image (grey, 0-255, long side
    # scaled to 512 px). Sharp photos score in the hundreds; motion blur and missed focus
    # fall under ~40. The sharpest tile, not the whole frame, so a portrait's bokeh is fine.
    blur_variance: float = 40.0
    # Mean luminance (0-255) under 45 is a dark photo: the LoRA learns the murk.
    dark_mean: float = 45.0
    # Backlit: most of the frame in deep shadow next to a blown-out part (a subject against a
    # window). Fractions of pixels under `shadow_level` and over `highlight_level`.
    backlit_shadow_fraction: float = 0.45
    backlit_highlight_fraction: float = 0.15
    shadow_level: int = 40
    highlight_level: int = 230
    # CLIP sees 75 tokens between its start and end token; the rest is cut off.
    max_caption_tokens: int = 75
    # Pixel checks work on a copy at most this many pixels on its long side: enough for blur
    # and exposure, and it keeps a 24 MP photo from costing a second each.
    analysis_size: int = 512
    # Folders past this many images get a progress bar in the CLI.
    progress_min_images: int = 200


DEFAULT_THRESHOLDS = Thresholds()


def thresholds_for(resolution: int, base: Thresholds = DEFAULT_THRESHOLDS) -> Thresholds:
    """The thresholds for a run at ``resolution``: an image is too small for *this* run when its
    short side is under the training resolution, and an error under half of it (at 512, the
    defaults). ``loratui check --resolution R`` and a run at R judge images alike."""
    return replace(base, min_short_side=resolution, min_short_side_error=max(1, resolution // 2))


def size_finding(width: int, height: int, t: Thresholds) -> tuple[str, str, str] | None:
    """(code, severity, message) for an image of ``width`` x ``height`` that is too large to
    decode or too small to train on, or None. The one rule for ``check``'s header pass and for
    the training scan, which skips every image it calls an error."""
    pixels = width * height
    if pixels > t.max_pixels:
        return ("decompression_bomb", ERROR,
                f"{width}x{height} is {pixels / 1e6:.0f} megapixels (limit {t.max_pixels / 1e6:.0f}); not decoded")
    short = min(width, height)
    if short < t.min_short_side:
        severity = ERROR if short < t.min_short_side_error else WARNING
        return "too_small", severity, f"{width}x{height}: the short side is under {t.min_short_side} px"
    return None

# Files that look like images but are not trained on (only IMAGE_EXTENSIONS are).
OTHER_IMAGE_EXTENSIONS = frozenset({".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".ico", ".tga"})
