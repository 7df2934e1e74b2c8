"""Base models on this machine, and a cheap look at the one the user names.

The wizard offers the models found in the usual places and says, as the user types, what a
base model is (its family) or why it cannot train: a path that does not exist, a file that is
not a Stable Diffusion checkpoint, a hub id that is not downloaded. Nothing here loads weights
or touches the network: a checkpoint's header is read, a hub id is looked up in the local
Hugging Face cache, and the search visits a fixed, small set of folders, never the whole disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from loratui.engine.errors import LoratuiError

MAX_FOUND = 200  # a folder of thousands of checkpoints is listed in part, never walked whole
MAX_ENTRIES = 2000  # entries looked at per folder searched
CHECKPOINT_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class FoundModel:
    """A model found on disk: what to type in the base model field, and where it was found."""

    value: str  # a path, or a hub id (from the Hugging Face cache)
    label: str  # short name to show
    where: str  # "models/ beside the dataset", "Hugging Face cache", "ComfyUI checkpoints"…


@dataclass(frozen=True)
class ModelCheck:
    """What a base model is, or why it will not train (``ok`` False: ``message`` says why)."""

    ok: bool
    message: str  # "SD-1.5 · diffusers folder", or the problem and its fix
    family: str = ""  # "SDXL", "SD-1.5"… when known


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME/hub,
    then the XDG cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def cached_hub_model(repo_id: str) -> Path | None:
    """The local snapshot of a diffusers model ``repo_id`` (one with its model_index.json), or
    None when it has not been downloaded."""
    repo = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    snapshots = repo / "snapshots"
    try:
        main = (repo / "refs" / "main").read_text().strip()
    except OSError:
        main = ""
    candidates = [snapshots / main] if main else []
    try:
        candidates += sorted(p for p in snapshots.iterdir() if p.name != main)
    except OSError:
        pass
    return next((c for c in candidates if (c / "model_index.json").is_file()), None)


def downloads_first(base_model: str) -> bool:
    """Whether loading ``base_model`` fetches it from the hub first: what ``resolve_model`` takes
    for a hub id, whose model is not in the local cache yet."""
    from loratui.engine.families.models import resolve_model

    try:
        spec = resolve_model(base_model)
    except LoratuiError:  # nothing to load, so nothing to download: the run stops on it first
        return False
    return spec.kind == "hub" and cached_hub_model(spec.location) is None


def check_model(text: str) -> ModelCheck:
    """What ``text`` (the base model field) names, read cheaply: its family, or the problem
    with it in one line (a path, a file's header, the local hub cache; never the network)."""
    from loratui.engine.families import FAMILIES
    from loratui.engine.families.models import HUB_ID, resolve_model

    text = text.strip()
    try:
        spec = resolve_model(text)
        if spec.kind == "single_file" and spec.location.lower().endswith(CHECKPOINT_SUFFIX):
            from loratui.engine.families.shipped import checkpoint_family

            checkpoint_family(Path(spec.location))  # a LoRA or a VAE is not a base model: say so now
    except LoratuiError as exc:
        return ModelCheck(False, exc.message)
    family = FAMILIES.get(spec.family)
    label = family.label if family else spec.family
    if spec.kind == "hub" and HUB_ID.match(text):
        snapshot = cached_hub_model(text)
        if snapshot is None:  # said now, not after a minute of retries that end in a misleading error
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            # short: the wizard shows it on one line of ~60 columns, beside the field that names the id
            why = "and HF_HUB_OFFLINE is set" if offline else "the run downloads it"
            return ModelCheck(not offline, f"{text}: not downloaded, {why}")
        from loratui.engine.families import folder_family

        family = FAMILIES.get(folder_family(snapshot))
        label = family.label if family else ""
        return ModelCheck(True, f"{label} · in the Hugging Face cache".lstrip(" ·"), label)
    kind = {"tiny": "built-in tiny model", "diffusers": "diffusers folder", "single_file": "single file"}[spec.kind]
    return ModelCheck(True, f"{label} · {kind}", label)


def search_places(dataset: Path | None, cwd: Path | None = None, home: Path | None = None) -> list[tuple[Path, str]]:
    """The folders searched for models, with how each is named to the user: a models/ folder
    beside the dataset and in the current directory, and AUTOMATIC1111's and ComfyUI's model
    folders in the usual install places."""
    cwd = cwd or Path.cwd()
    home = home or Path.home()
    places: list[tuple[Path, str]] = []
    if dataset is not None:
        places += [(dataset / "models", "models/ in the dataset"), (dataset.parent / "models", "models/ beside the dataset")]
    places.append((cwd / "models", "models/ here"))
    for root in (cwd, home, home / "stable-diffusion-webui", home / "sd" / "stable-diffusion-webui",
                 home / "ComfyUI", home / "comfyui"):
        places.append((root / "models" / "Stable-diffusion", "AUTOMATIC1111 models"))
        places.append((root / "models" / "checkpoints", "ComfyUI checkpoints"))
    seen: set[Path] = set()
    unique = []
    for path, where in places:
        key = path.absolute()
        if key not in seen:
            seen.add(key)
            unique.append((path, where))
    return unique


def find_models(dataset: Path | None = None, cwd: Path | None = None, home: Path | None = None) -> list[FoundModel]:
    """Models in the usual places: .safetensors checkpoints and diffusers folders in the
    ``search_places`` (their top level and one folder down), and the Hugging Face cache's
    diffusers models. Bounded: at most ``MAX_ENTRIES`` entries per folder, ``MAX_FOUND`` in all."""
    found: list[FoundModel] = []
    seen: set[str] = set()

    def add(value: str, label: str, where: str) -> None:
        if value not in seen and len(found) < MAX_FOUND:
            seen.add(value)
            found.append(FoundModel(value, label, where))

    for folder, where in search_places(dataset, cwd, home):
        for path in _entries(folder):
            if _is_diffusers(path):
                add(str(path), path.name, where)
            elif path.is_dir():
                for inner in _entries(path):  # one level down (models/sdxl/x.safetensors)
                    if _is_diffusers(inner) or _is_checkpoint(inner):
                        add(str(inner), f"{path.name}/{inner.name}", where)
            elif _is_checkpoint(path):
                add(str(path), path.name, where)
    for repo_id in _cached_repo_ids():
        add(repo_id, repo_id, "Hugging Face cache")
    return found


def _entries(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            entries = []
            for entry in it:
                if len(entries) >= MAX_ENTRIES:
                    break
                if not entry.name.startswith("."):
                    entries.append(Path(entry.path))
    except OSError:
        return []
    return sorted(entries)


def _is_checkpoint(path: Path) -> bool:
    return path.suffix.lower() == CHECKPOINT_SUFFIX and path.is_file()


def _is_diffusers(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def _cached_repo_ids() -> list[str]:
    """Hub ids of the diffusers models in the local Hugging Face cache."""
    ids = []
    for repo in _entries(hub_cache_dir()):
        if repo.name.startswith("models--") and repo.name.count("--") >= 2:
            repo_id = repo.name[len("models--"):].replace("--", "/", 1)
            if cached_hub_model(repo_id) is not None:
                ids.append(repo_id)
    return ids
