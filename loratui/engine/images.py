"""Reading training images: EXIF orientation, any mode to RGB, resize and centre crop."""

from __future__ import annotations

from pathlib import Path

from loratui.engine.errors import DatasetError


def open_rgb(path: Path):
    """The image at ``path`` upright (EXIF applied) and in RGB (alpha over white)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
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


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
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
    scale = max(width / image.width, height / image.height)
    new_w = max(width, round(image.width * scale))
    new_h = max(height, round(image.height * scale))
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
