"""The engine never imports UI code; the CLI module never imports the heavy libraries."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import loratui.engine


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_imports_no_ui_module():
    names = [m.name for m in pkgutil.iter_modules(loratui.engine.__path__)]
    assert "train" in names and "config" in names
    imports = "\n".join(f"import loratui.engine.{n}" for n in names)
    loaded = _modules_after(imports)
    for ui in ("textual", "rich", "typer", "click", "loratui.cli", "loratui.app", "loratui.progress"):
        assert not any(m == ui or m.startswith(ui + ".") for m in loaded), f"engine imported {ui}"


def test_cli_module_does_not_import_heavy_libraries():
    loaded = _modules_after("import loratui.cli")
    for heavy in ("torch", "diffusers", "transformers", "peft", "accelerate", "pydantic"):
        assert heavy not in loaded, f"`import loratui.cli` imported {heavy}: --help would be slow"
