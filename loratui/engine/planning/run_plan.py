"""Planning a run before any heavy work: the images, their buckets, and the step schedule."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from loratui.engine.data.batches import BatchPlan, TrainItem
from loratui.engine.data.buckets import make_buckets, nearest_bucket
from loratui.engine.config import RunConfig
from loratui.engine.data.dataset import REPEAT_FOLDER, Dataset, scan
from loratui.engine.errors import ConfigError, DatasetError, LoratuiError
from loratui.engine.data.images import image_size
from loratui.engine.data.lint_rules import ERROR, size_finding, thresholds_for
from loratui.engine.data.tags import normalise_tag, split_tags
from loratui.engine.planning.presets import Schedule, derive_schedule, get_preset
from loratui.engine.validate.validation import holdout_count, pick_holdout


@dataclass
class RunPlan:
    """What a run will train on and for how long."""

    dataset: Dataset
    items: list[TrainItem]  # the training images, then the regularisation images (item.reg)
    batches: BatchPlan
    schedule: Schedule
    warnings: list[str] = field(default_factory=list)
    validation_items: list[TrainItem] = field(default_factory=list)  # held out from training
    reg_dataset: Dataset | None = None  # the regularisation (class) images' folder
    class_prompt: str | None = None  # the caption of a regularisation image that has none
    masked: bool = False  # the loss is masked (data/masks.py)

    @property
    def train_items(self) -> list[TrainItem]:
        return [i for i in self.items if not i.reg]

    @property
    def reg_items(self) -> list[TrainItem]:
        return [i for i in self.items if i.reg]

    def caption_for(self, item: TrainItem) -> str:
        """The item's caption (``item_caption``)."""
        return item_caption(item, self.class_prompt)


def item_caption(item: TrainItem, class_prompt: str | None) -> str:
    """The stored caption, or the class name of a kohya folder (``10_mycat`` → ``mycat``); a
    regularisation image without either has the class prompt."""
    if item.record.caption:
        return item.record.caption
    parts = item.record.rel.split("/")
    match = REPEAT_FOLDER.match(parts[0]) if len(parts) > 1 else None
    if match:
        return match.group(2).replace("_", " ")
    return (class_prompt or "") if item.reg else ""


def plan_run(config: RunConfig) -> RunPlan:
    """Scan the dataset, bucket every image (headers only) and derive the schedule."""
    if config.batch_size == "auto":  # fit_to_device turns it into a number first
        raise ConfigError("batch_size = auto is decided when training starts, from the GPU's free memory",
                          "plan with a number, or start the run")
    dataset = scan(config.dataset)
    if config.metadata_path:
        _check_metadata_path(dataset, config.metadata_path)
    dataset.require_images()
    buckets = make_buckets(config.resolution, config.buckets)
    warnings = list(dataset.notes)
    masked = config.masked_loss if config.masked_loss is not None else _has_mask_files(dataset)
    items, wrong_size = _bucketed(dataset, config, buckets, warnings, masked)
    if not items and wrong_size:
        raise DatasetError(
            f"{dataset.folder}: none of the images can be trained at {config.resolution} px "
            f"({wrong_size} too small or too large, {len(dataset.images) - wrong_size} unreadable)",
            f"run `loratui check --resolution {config.resolution}` on it, or lower --resolution")
    if not items:
        raise DatasetError(f"{dataset.folder}: none of the images can be read", "run `loratui check` on it")
    held = pick_holdout(len(items), holdout_count(len(items), config.validation), config.seed)
    validation_items = [replace(items[i], index=n, repeats=1) for n, i in enumerate(held)]
    if held:
        kept = [item for i, item in enumerate(items) if i not in set(held)]
        items = [replace(i, index=n) for n, i in enumerate(kept)]
        names = ", ".join(v.record.rel for v in validation_items)
        warnings.append(f"held back {len(held)} image(s) to measure over-fitting: {names}")
    uncaptioned = sum(1 for i in items if not i.record.caption)
    if uncaptioned:
        warnings.append(uncaptioned_warning(uncaptioned, len(items), config.dataset, config.trigger))
    if masked:
        with_mask = sum(1 for i in items if i.mask)
        warnings.append(f"masked loss: {with_mask} of {len(items)} images have a mask"
                        + ("; the others train on the whole image" if with_mask < len(items) else ""))
    preset = get_preset(config.preset)
    probe = BatchPlan(items, config.batch_size, config.seed)
    schedule = derive_schedule(
        probe.bucket_views(),
        config.batch_size,
        preset.target_steps,
        epochs=config.epochs,
        repeats=config.repeats,
        steps=config.steps,
        grad_accum=config.grad_accum,
        folder_repeats=any(i.repeats != 1 for i in items),
    )
    if schedule.repeats != 1:
        items = [replace(i, repeats=i.repeats * schedule.repeats) for i in items]
    reg_dataset = None
    if config.reg_folder:
        reg_dataset, reg_items = _regularisation(config, buckets, warnings, masked, sum(i.repeats for i in items))
        items += [replace(r, index=len(items) + n) for n, r in enumerate(reg_items)]
        schedule = with_regularisation(schedule, BatchPlan(items, config.batch_size, config.seed), config,
                                       sum(r.repeats for r in reg_items))
    return RunPlan(
        dataset, items, BatchPlan(items, config.batch_size, config.seed), schedule, warnings, validation_items,
        reg_dataset, config.class_prompt, masked,
    )


def _bucketed(dataset: Dataset, config: RunConfig, buckets, warnings: list[str], masked: bool,
              reg: bool = False) -> tuple[list[TrainItem], int]:
    """Each readable image of ``dataset`` with its bucket (and mask), and how many were skipped
    for their size; what is skipped is a warning."""
    from loratui.engine.data.masks import mask_size_problem, mask_source

    limits = thresholds_for(config.resolution)  # `loratui check --resolution R` applies the same
    items: list[TrainItem] = []
    wrong_size = 0
    what = "regularisation image " if reg else ""
    for record in dataset.images:
        try:
            width, height = image_size(record.path)
            mask = mask_source(record.path, dataset.folder, alpha=config.masked_loss is True) if masked else None
            problem = mask_size_problem(mask, record.path, (width, height)) if mask else None
        except LoratuiError as exc:
            warnings.append(f"skipped {what}{record.rel}: {exc.message}")
            continue
        if problem:
            warnings.append(f"skipped {what}{record.rel}: {problem} (not trained)")
            continue
        finding = size_finding(width, height, limits)
        if finding is not None and finding[1] == ERROR:  # what check calls an error is not trained
            warnings.append(f"skipped {what}{record.rel}: {finding[2]} ({finding[0]}; not trained)")
            wrong_size += 1
            continue
        bucket = nearest_bucket(width, height, buckets)
        items.append(TrainItem(len(items), record, bucket, record.repeats, (width, height), reg, mask))
    return items, wrong_size


def _has_mask_files(dataset: Dataset) -> bool:
    from loratui.engine.data.masks import mask_file_for

    return any(mask_file_for(r.path).exists() for r in dataset.images)


def _regularisation(config: RunConfig, buckets, warnings: list[str], masked: bool,
                    train_views: int) -> tuple[Dataset, list[TrainItem]]:
    """The regularisation images, with repeats that give each epoch as many of them as it has
    training views (kohya's rule): fewer images repeat, and of more, a seeded choice is used."""
    import random

    folder = scan(config.reg_folder)
    if not folder.images:
        raise DatasetError(f"{folder.folder}: no images found for regularisation",
                           "point --reg-folder at a folder of class images (e.g. photos of other cats)")
    if (folder.folder.resolve() == Path(config.dataset).resolve()):
        raise DatasetError(f"{folder.folder}: the regularisation folder is the dataset itself",
                           "pass a separate folder of class images to --reg-folder")
    warnings.extend(f"regularisation images: {note}" for note in folder.notes)
    reg, _ = _bucketed(folder, config, buckets, warnings, masked, reg=True)
    if not reg:
        raise DatasetError(f"{folder.folder}: none of the regularisation images can be trained",
                           "run `loratui check` on it")
    uncaptioned = [r.record.rel for r in reg if not item_caption(r, config.class_prompt)]
    if uncaptioned:
        raise DatasetError(
            f"{folder.folder / uncaptioned[0]}: a regularisation image needs a caption "
            f"({len(uncaptioned)} of {len(reg)} have none)",
            "pass --class-prompt \"a photo of a cat\" (the class, without the trigger), or name the "
            "folder like kohya's 1_cat, or write .txt captions")
    order = list(range(len(reg)))
    random.Random(f"loratui-reg-{config.seed}").shuffle(order)
    repeats = [0] * len(reg)
    for view in range(train_views):  # round-robin over a seeded order: the counts differ by one at most
        repeats[order[view % len(reg)]] += 1
    used = [replace(item, repeats=n) for item, n in zip(reg, repeats) if n]
    if len(used) < len(reg):
        warnings.append(f"regularisation: {len(used)} of {len(reg)} images are used (as many as the "
                        f"{train_views} training views per epoch); the others are not")
    return folder, [replace(item, index=n) for n, item in enumerate(used)]


def with_regularisation(schedule: Schedule, batches: BatchPlan, config: RunConfig, reg_views: int) -> Schedule:
    """The schedule once each epoch also holds ``reg_views`` regularisation views: as many epochs
    as derived (so the subject is seen as often), each twice as long; ``--steps`` stays the total."""
    import math
    from dataclasses import replace as with_

    per_epoch = max(1, math.ceil(batches.batches_per_epoch / config.grad_accum))
    if config.steps is not None:
        total, epochs = config.steps, max(1, math.ceil(config.steps / per_epoch))
    else:
        epochs = schedule.epochs
        total = per_epoch * epochs
    explain = (f"{schedule.explain}; with {reg_views} regularisation views per epoch (as many as the "
               f"training views) = {per_epoch} steps per epoch, {total} steps")
    return with_(schedule, epochs=epochs, steps_per_epoch=per_epoch, total_steps=total, explain=explain)


def uncaptioned_warning(uncaptioned: int, total: int, folder: str, trigger: str | None) -> str:
    """The warning for images without a caption, with the fix: they train on the trigger word
    alone, or (no trigger) on an empty prompt, which ties the LoRA to no word at all."""
    head = f"{uncaptioned} of {total} images have no caption"
    if trigger:
        return (f"{head}; they train on the trigger word '{trigger}' alone "
                f"(`loratui caption {folder} --trigger {trigger}` describes them)")
    return (f"{head}: they train on an empty prompt, so the LoRA answers to no word; run "
            f"`loratui caption {folder}` first, or pass --trigger WORD so every image is at least 'WORD'")


# First tags that many captions share without being a trigger word: booru counts and framing.
NOT_TRIGGERS = re.compile(r"^(\d+\+?(girl|boy|other)s?|solo|multiple (girls|boys)|no humans|a photo( of)?|photo)$")


def detect_trigger(dataset: Dataset) -> str | None:
    """The trigger word the captions already use, when the user named none: the first tag of
    every caption when it is the same (compared as tags are) in two or more captions, a few
    words at most and not a booru count tag (``1girl``). None otherwise."""
    firsts = [split_tags(r.caption)[:1] for r in dataset.images if r.caption]
    if len(firsts) < 2 or any(not f for f in firsts):
        return None
    keys = {normalise_tag(f[0]) for f in firsts}
    if len(keys) != 1:
        return None
    tag = firsts[0][0]
    if len(tag.split()) > 3 or NOT_TRIGGERS.match(normalise_tag(tag)):
        return None
    return tag


def _check_metadata_path(dataset: Dataset, metadata_path: str) -> None:
    from pathlib import Path

    path = Path(metadata_path)
    if not path.is_absolute():
        path = dataset.folder / path
    if path.resolve() != (dataset.folder / "metadata.csv").resolve():
        raise DatasetError(
            f"{metadata_path}: loratui reads metadata.csv from the dataset folder itself",
            f"move it to {dataset.folder / 'metadata.csv'}",
        )
