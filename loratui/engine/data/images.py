"""Reading training images: EXIF orientation, any mode to RGB, resize and centre crop."""

from __future__ import annotations

from pathlib import Path

from loratui.engine.errors import DatasetError

_ORIENTATION = 0x0112  # the EXIF tag


def open_rgb(path: Path, cover: tuple[int, int] | None = None):
    """The image at ``path`` upright (EXIF applied) and in RGB (alpha over white).

    With ``cover`` (the size it will be fitted to), a large JPEG is decoded at 1/2, 1/4 or 1/8
    scale where that still leaves twice the width and height the fit keeps: 2.4x faster on 12-megapixel
    photos, and the fitted image is the same to the eye (PSNR 52 dB; benchmarks/RESULTS.md).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if cover is not None and im.format in ("JPEG", "MPO"):  # MPO: a camera's multi-picture JPEG
                _draft(im, cover)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            if im.mode == "I;16" or im.mode.startswith("I;16"):
                # 16-bit greyscale: scale to 8 bits rather than clip
                import numpy as np

                arr = np.asarray(im, dtype=np.uint16) >> 8
                im = Image.fromarray(arr.astype("uint8"), "L")
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(
            f"{path}: cannot read this image ({exc.__class__.__name__})",
            "run `loratui check` on the folder, then fix or remove the file",
        ) from None


def _draft(im, cover: tuple[int, int]) -> None:
    # draft scales the stored pixels, before exif_transpose turns (and loads) them
    turned = im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    upright = im.size[::-1] if turned else im.size
    width, height = (2 * side for side in cover_size(upright, cover))
    im.draft("RGB", (height, width) if turned else (width, height))


def cover_size(image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The size an image is resized to, keeping its aspect, to cover ``size``."""
    scale = max(size[0] / image_size[0], size[1] / image_size[1])
    return max(size[0], round(image_size[0] * scale)), max(size[1], round(image_size[1] * scale))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size rule decides
            with Image.open(path) as im:
                width, height = im.size
                orientation = im.getexif().get(_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(
            f"{path}: cannot read this image ({exc.__class__.__name__})",
            "run `loratui check` on the folder, then fix or remove the file",
        ) from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def fit_to_bucket(image, size: tuple[int, int]):
    """Resize ``image`` to cover ``size`` (keeping its aspect), then crop the centre."""
    from PIL import Image

    width, height = size
    new_w, new_h = cover_size(image.size, size)
    image = image.resize((new_w, new_h), Image.Resampling.LANCZOS)
    left = (new_w - width) // 2
    top = (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_tensor(image):
    """An RGB PIL image as a float tensor (3, H, W) in [-1, 1], as the VAE expects."""
    import numpy as np
    import torch

    arr = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
