"""Masks for the masked loss: where in an image the subject is, so the loss is taken there only.

A mask is ``NAME.mask.png`` beside ``NAME.jpg`` (greyscale; white = subject, black = ignore,
grey in between weighs in between), or the image's own alpha channel when masked loss is
asked for. It is fitted to the image's bucket exactly as the image is (resize to cover, centre
crop) and averaged down to the latent grid (1/8), where the loss is computed.

Mask files are never trained on as images: the dataset scan and ``loratui check`` skip them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratui.engine.errors import DatasetError

MASK_SUFFIX = ".mask.png"
ALPHA = "alpha"  # a mask source: the image's alpha channel
LATENT_SCALE = 8  # the VAE's downsampling: pixels per latent cell, per side


def is_mask_name(name: str) -> bool:
    """True for a mask file's name (``x.mask.png``, any case)."""
    return name.lower().endswith(MASK_SUFFIX)


def mask_file_for(image: Path) -> Path:
    """Where ``image``'s mask file would be: ``NAME.mask.png`` beside it."""
    return image.with_name(image.stem + MASK_SUFFIX)


def masked_stem(mask_rel: str) -> str:
    """The relative path, without extension, of the image a mask belongs to (``a/x.mask.png`` → ``a/x``)."""
    return mask_rel[: -len(MASK_SUFFIX)]


def has_alpha(path: Path) -> bool:
    """True when the image file carries an alpha channel (read from its header)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    except Exception:  # an unreadable image is reported where it is read
        return False


def mask_source(image: Path, folder: Path, alpha: bool) -> str | None:
    """``image``'s mask: the path of its mask file, ``ALPHA`` (its alpha channel, when ``alpha``),
    or None. A mask file that the dataset rules refuse (a link out of the folder) is a DatasetError."""
    from loratui.engine.data.dataset import refuse_reason

    path = mask_file_for(image)
    if path.exists() or path.is_symlink():
        if (reason := refuse_reason(path, folder)) is not None:
            raise DatasetError(f"{path}: {reason}", "copy the mask into the dataset folder")
        return str(path)
    if alpha and has_alpha(image):
        return ALPHA
    return None


def read_mask_image(source: str, image: Path):
    """The mask as an upright greyscale PIL image (alpha channels EXIF-turned with their image)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = image if source == ALPHA else Path(source)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if source == ALPHA:
                return im.convert("RGBA").getchannel("A")
            if im.mode in ("RGBA", "LA"):  # a mask saved with transparency: opaque white = subject
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            return im.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot read this mask ({exc.__class__.__name__})",
                           "re-export it as a greyscale PNG the size of its image, or delete it") from None


def mask_size_problem(source: str, image: Path, size: tuple[int, int]) -> str | None:
    """From the mask file's header: why it cannot go with an image of upright ``size``, or None."""
    if source == ALPHA:
        return None
    from loratui.engine.data.images import image_size

    try:
        found = image_size(Path(source))
    except DatasetError:
        return "its mask cannot be read; re-export it as a greyscale PNG the size of its image"
    if found != tuple(size):
        return (f"its mask is {found[0]}x{found[1]} and the image {size[0]}x{size[1]}: "
                "a mask must be the size of its image")
    return None


def mask_problem(source: str, image: Path, size: tuple[int, int]) -> str | None:
    """Why the mask cannot be trained with (another size than its image, nothing white), or None.
    ``size`` is the image's upright (width, height)."""
    mask = read_mask_image(source, image)
    if mask.size != tuple(size):
        return (f"the mask is {mask.size[0]}x{mask.size[1]}, its image {size[0]}x{size[1]}: a mask must "
                "be the size of its image")
    if mask.getextrema()[1] == 0:
        return "the mask is empty (all black): nothing of this image would be trained"
    return None


def latent_mask(source: str, image: Path, bucket: tuple[int, int]) -> Any:
    """The mask fitted to ``bucket`` as the image is, averaged to the latent grid: a (1, h/8, w/8)
    uint8 tensor (0 = ignore … 255 = subject)."""
    import numpy as np
    import torch
    from PIL import Image

    from loratui.engine.data.images import fit_to_bucket

    fitted = fit_to_bucket(read_mask_image(source, image), bucket)
    width, height = bucket
    # BOX resampling averages each 8x8 block: a cell half covered by the subject weighs one half
    small = fitted.resize((width // LATENT_SCALE, height // LATENT_SCALE), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(small, dtype=np.uint8).copy()).unsqueeze(0)


def as_weights(masks: Any) -> Any:
    """A stack of uint8 masks (B, 1, h, w) as float weights in [0, 1]."""
    return masks.float() / 255.0


def masked_mean(loss: Any, weights: Any) -> Any:
    """Each sample's loss (B, C, h, w) averaged over the masked area only: the sum of the loss
    times the mask over the mask's sum, so a small subject teaches as much per step as a large
    one, and what lies outside the mask has no gradient at all."""
    area = weights.sum(dim=[1, 2, 3]).clamp(min=1e-6) * loss.shape[1]
    return (loss * weights).sum(dim=[1, 2, 3]) / area


def item_mask(item: Any) -> Any:
    """A masked item's latent mask, or why it cannot be used (a line: unreadable, or empty at
    the item's crop, where nothing of the image would be trained)."""
    try:
        mask = latent_mask(item.mask, item.record.path, item.bucket)
    except DatasetError as exc:
        return exc.message.split(": ", 1)[-1]
    if int(mask.max()) == 0:
        return "the mask is empty (all black) at this crop: nothing of this image would be trained"
    return mask


def load_masks(plan: Any, bus: Any, readers: int | None = None) -> dict[int, Any]:
    """Every masked item's latent mask, by item index, read on a pool of threads. An item whose
    mask turns out unusable (empty, unreadable) is taken out of the plan with a warning, as an
    unreadable image is; the indices returned are the plan's after that."""
    from concurrent.futures import ThreadPoolExecutor

    from loratui.engine.data.latents import drop_unreadable, reader_count

    masked = [item for item in plan.items if item.mask]
    with ThreadPoolExecutor(readers or reader_count(), thread_name_prefix="loratui-mask") as pool:
        found = dict(zip((item.index for item in masked), pool.map(item_mask, masked)))
    problems = {index: value for index, value in found.items() if isinstance(value, str)}
    masks = {index: value for index, value in found.items() if not isinstance(value, str)}
    if problems:
        masks = drop_unreadable(plan, masks, problems, set(), bus, found="while reading masks")
    return masks


def batch_masks(items: list, masks: dict[int, Any], indices: list[int]) -> Any:
    """The masks of a batch as one uint8 tensor (B, 1, h, w); an item without a mask is all 255."""
    import torch

    out = []
    for i in indices:
        width, height = items[i].bucket
        out.append(masks[i] if i in masks else
                   torch.full((1, height // LATENT_SCALE, width // LATENT_SCALE), 255, dtype=torch.uint8))
    return torch.stack(out)
