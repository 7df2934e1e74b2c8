"""Planning a run before any heavy work: the images, their buckets, and the step schedule."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from loratui.engine.data.batches import BatchPlan, TrainItem
from loratui.engine.data.buckets import make_buckets, nearest_bucket
from loratui.engine.config import RunConfig
from loratui.engine.data.dataset import REPEAT_FOLDER, Dataset, scan
from loratui.engine.errors import ConfigError, DatasetError, LoratuiError
from loratui.engine.data.images import image_size
from loratui.engine.data.lint_rules import ERROR, size_finding, thresholds_for
from loratui.engine.planning.presets import Schedule, derive_schedule, get_preset
from loratui.engine.validate.validation import holdout_count, pick_holdout


@dataclass
class RunPlan:
    """What a run will train on and for how long."""

    dataset: Dataset
    items: list[TrainItem]
    batches: BatchPlan
    schedule: Schedule
    warnings: list[str] = field(default_factory=list)
    validation_items: list[TrainItem] = field(default_factory=list)  # held out from training

    def caption_for(self, item: TrainItem) -> str:
        """The stored caption, or the class name of a kohya folder (``10_mycat`` → ``mycat``)."""
        if item.record.caption:
            return item.record.caption
        parts = item.record.rel.split("/")
        match = REPEAT_FOLDER.match(parts[0]) if len(parts) > 1 else None
        return match.group(2).replace("_", " ") if match else ""


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
    items: list[TrainItem] = []
    warnings = list(dataset.notes)
    limits = thresholds_for(config.resolution)  # `loratui check --resolution R` applies the same
    wrong_size = 0
    for record in dataset.images:
        try:
            width, height = image_size(record.path)
        except LoratuiError as exc:
            warnings.append(f"skipped {record.rel}: {exc.message}")
            continue
        finding = size_finding(width, height, limits)
        if finding is not None and finding[1] == ERROR:  # what check calls an error is not trained
            warnings.append(f"skipped {record.rel}: {finding[2]} ({finding[0]}; not trained)")
            wrong_size += 1
            continue
        bucket = nearest_bucket(width, height, buckets)
        items.append(TrainItem(len(items), record, bucket, record.repeats, (width, height)))
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
        warnings.append(
            f"{uncaptioned} of {len(items)} images have no caption"
            + (f"; they train on the trigger word '{config.trigger}' alone" if config.trigger else "")
        )
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
    return RunPlan(
        dataset, items, BatchPlan(items, config.batch_size, config.seed), schedule, warnings, validation_items
    )


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
