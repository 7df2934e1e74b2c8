"""Inputs that cannot hurt: hostile or broken files get one clear line from the CLI, never a
traceback, and never run code. Every CLI call here is a real `loratui` process."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from reliability_kit import REPO, loratui, one_clear_line, standard_config, state_of

pytestmark = pytest.mark.reliability


class _Payload:
    """Pickles to a call of ``open(marker, "w")``: loading it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_pickle(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"state": {0: _Payload(marker)}, "param_groups": []}, path)
    return path


def test_the_payload_is_live(tmp_path):
    """The malicious files below really would run code if anything unpickled them."""
    marker = tmp_path / "proof"
    data = _malicious_pickle(tmp_path / "p.pt", marker)
    import torch

    torch.load(data, weights_only=False)
    assert marker.exists()


@pytest.fixture(scope="module")
def malicious_resume(tmp_path_factory, rel_dataset):
    """A stopped run whose optimizer.pt is a malicious pickle, resumed with the CLI."""
    from loratui.engine.train.stop import StopSignal
    from loratui.engine.train.loop import train

    base = tmp_path_factory.mktemp("malicious")
    stop = StopSignal()
    stop.request("test")
    result = train(standard_config(rel_dataset, base, steps=4, save_every=0), base / "run", stop=stop)
    assert result.status == "stopped"
    [checkpoint] = (base / "run" / "checkpoints").glob("step*")
    marker = base / "PWNED"
    _malicious_pickle(checkpoint / "optimizer.pt", marker)
    return loratui("train", "--resume", str(base / "run")), marker, base / "run"


def test_a_malicious_optimizer_pickle_never_runs(malicious_resume):
    result, marker, run_dir = malicious_resume
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert not marker.exists(), "the checkpoint's pickle ran code"
    assert state_of(run_dir)["status"] == "failed"


def test_a_malicious_optimizer_pickle_is_refused_in_one_clear_line(malicious_resume):
    result, _, _ = malicious_resume
    line = one_clear_line(result)
    assert "checkpoints/step000001" in line and "refused" in line


def test_the_pickle_refusal_names_the_file_and_does_not_teach_the_bypass(malicious_resume):
    result, _, _ = malicious_resume
    line = one_clear_line(result)
    assert "optimizer.pt" in line
    assert "\x1b" not in line and "can still be loaded" not in line


def test_a_pickle_base_model_is_refused_without_allow_pickle(tmp_path, rel_dataset):
    marker = tmp_path / "PWNED"
    model = _malicious_pickle(tmp_path / "model.ckpt", marker)
    result = loratui("train", str(rel_dataset), "--base-model", str(model), "--output", str(tmp_path / "out"))
    line = one_clear_line(result)
    assert "pickle" in line and "--allow-pickle" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


def _header_claims(path: Path, length: int) -> Path:
    path.write_bytes(struct.pack("<Q", length) + b'{"__metadata__":{}}')
    return path


def test_a_safetensors_header_claiming_2_60_bytes_is_refused_before_parsing(tmp_path, rel_dataset):
    model = _header_claims(tmp_path / "huge.safetensors", 2**60)
    result = loratui("train", str(rel_dataset), "--base-model", str(model), "--output", str(tmp_path / "out"))
    line = one_clear_line(result)
    assert f"claims {2**60} bytes" in line


def test_a_lora_with_an_absurd_header_is_refused_by_sample(tmp_path):
    lora = _header_claims(tmp_path / "evil.safetensors", 2**60)
    one_clear_line(loratui("sample", str(lora), "--prompt", "x", "--out", str(tmp_path / "grid.png")))


BAD_CONFIGS = {
    "malformed.toml": ("rank = = 4\n[", "not valid TOML"),
    "wrong_type.toml": ('rank = "sixteen"\n', "rank"),
    "out_of_range.toml": ("lr = 5.0\n", "lr"),
    "unknown.toml": ("learning_rat = 1e-4\n", "unknown key 'learning_rat'"),
    "unknown_key.yaml": ("train_data_dir: photos\nnetwork_dimm: 8\n", "unknown key 'network_dimm'"),
    "wrong_type.yaml": ("train_data_dir: photos\nlora_rank: lots\n", "rank"),
    "bad_resolution.yaml": ("train_data_dir: photos\nresolution: big,big\n", "resolution"),
    "not_a_mapping.yaml": ("- a\n- b\n", "mapping"),
    "python_tag.yaml": ("train_data_dir: !!python/object/apply:os.system ['touch PWNED']\n", "not valid YAML"),
    "binary.toml": (b"\xff\xfe\x00rank", "not UTF-8"),
    "traversal_name.toml": ('name = "../../escape"\n', "name"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_a_bad_config_file_is_one_clear_line(tmp_path, rel_dataset, name):
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = loratui("train", str(rel_dataset), "--config", str(path), "--output", str(tmp_path / "out"),
                     cwd=tmp_path)
    line = one_clear_line(result)
    assert expected in line
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


# Found by hand while writing the fuzz harness (an "internal error" line at 9fcb3a9).
PATHOLOGICAL = {
    "deep.toml": ("a = " + "[" * 5000 + "]" * 5000 + "\n", "RecursionError escapes tomllib"),
    "deep.yaml": ("train_data_dir: " + "[" * 5000 + "]" * 5000 + "\n", "RecursionError escapes yaml"),
    "list_preset.toml": ('preset = ["pet"]\n', "get_preset([...]) raises TypeError, not ConfigError"),
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_a_pathological_config_file_is_one_clear_line(tmp_path, rel_dataset, name):
    path = tmp_path / name
    path.write_text(PATHOLOGICAL[name][0])
    one_clear_line(loratui("train", str(rel_dataset), "--config", str(path), "--output", str(tmp_path / "out")))


def _bomb_png(path: Path) -> Path:
    """A valid PNG header claiming 100000 x 100000 pixels, in a few bytes (no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def hostile_dataset(tmp_path, rel_dataset) -> Path:
    """The four demo images plus: a binary caption, a bomb, and a BOM-prefixed ragged metadata.csv."""
    from PIL import Image

    folder = tmp_path / "hostile"
    shutil.copytree(rel_dataset, folder)
    images = sorted(folder.glob("*.png"))
    for image in images:  # big enough that `check` looks at their captions (its floor is 512 px)
        with Image.open(image) as im:
            im.resize((512, 512)).save(image)
    images[0].with_suffix(".txt").write_bytes(b"\x89\xff\xfe\x00\x00binary\x9c")  # not UTF-8
    images[1].with_suffix(".txt").unlink()  # its caption comes from metadata.csv (BOM header)
    images[2].with_suffix(".txt").unlink()  # its metadata.csv row is ragged (no prompt cell)
    _bomb_png(folder / "bomb.png")
    (folder / "metadata.csv").write_bytes(
        b"\xef\xbb\xbffilename,prompt\r\n"
        + f"{images[1].name},zxq from the csv\r\n".encode()
        + f"{images[2].name}\r\n".encode()
        + b"extra,cells,in,this,row\r\n"
    )
    return folder


def test_check_reports_each_hostile_input_as_a_finding(hostile_dataset):
    result = loratui("check", str(hostile_dataset), "--json")
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    found = {(f["path"], f["code"]) for f in report["findings"]}
    images = sorted(p.name for p in hostile_dataset.glob("demo*.png"))
    assert ("bomb.png", "decompression_bomb") in found
    assert any(code == "unreadable_caption" and images[0][:-4] in path for path, code in found)
    assert (images[1], "missing_caption") not in found  # the BOM did not hide the 'filename' column
    assert (images[2], "missing_caption") in found  # the ragged row gave it no caption
    assert result.returncode == 1  # errors found: exit 1, as the contract says


def test_train_on_a_hostile_dataset_skips_what_it_cannot_read_and_finishes(tmp_path, hostile_dataset):
    result = loratui("train", str(hostile_dataset), "--base-model", "tiny", "--resolution", "64", "--steps", "2",
                     "--save-every", "0", "--sample-every", "0", "--batch-size", "2", "--trigger", "zxq",
                     "--output", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    warnings = " ".join(e["message"] for e in events if e["event"] == "warning")
    assert "bomb.png" in warnings and ".txt" in warnings
    assert events[-1]["event"] == "run_finished"


def test_a_dataset_of_only_a_bomb_is_one_clear_line(tmp_path):
    folder = tmp_path / "bombs"
    folder.mkdir()
    _bomb_png(folder / "bomb.png")
    result = loratui("train", str(folder), "--base-model", "tiny", "--resolution", "64", "--steps", "1",
                     "--output", str(tmp_path / "out"))
    line = one_clear_line(result)
    assert "bomb.png" in line or "none of the images can be read" in line


def test_a_metadata_csv_with_a_huge_field_is_one_clear_line(tmp_path, rel_dataset):
    """csv's 131072-character field limit is a csv.Error: it must reach the user as a DatasetError."""
    folder = tmp_path / "huge"
    shutil.copytree(rel_dataset, folder)
    (folder / "metadata.csv").write_text("filename,prompt\na.png," + "x" * 200_000 + "\n")
    result = loratui("train", str(folder), "--base-model", "tiny", "--steps", "1", "--output", str(tmp_path / "o"))
    one_clear_line(result)


def test_paths_that_leave_the_dataset_are_never_followed(tmp_path, rel_dataset):
    from loratui.engine.data.dataset import scan

    outside = tmp_path / "secret.png"
    shutil.copy2(next(rel_dataset.glob("*.png")), outside)
    folder = tmp_path / "photos"
    shutil.copytree(rel_dataset, folder)
    (folder / "link.png").symlink_to(outside)
    (folder / "metadata.csv").write_text("filename,prompt\n../secret.png,stolen\n/etc/passwd,x\n")
    assert all(image.rel != "link.png" and "secret" not in str(image.path) for image in scan(folder).images)
    result = loratui("check", str(folder), "--json")
    assert "Traceback" not in result.stderr, result.stderr
    unsafe = {f["path"] for f in json.loads(result.stdout)["findings"] if f["code"] == "unsafe_path"}
    assert {"link.png", "../secret.png", "/etc/passwd"} <= unsafe, unsafe


def _shell_calls(source: str) -> list[int]:
    """Lines that start a shell: ``shell=True``, os.system, os.popen, subprocess.getoutput."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
               for k in node.keywords):
            lines.append(node.lineno)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in {"system", "popen", "getoutput", "getstatusoutput"}:
            lines.append(node.lineno)
    return lines


def test_no_subprocess_call_in_loratui_uses_a_shell():
    assert _shell_calls("import subprocess\nsubprocess.run('x', shell=True)\nos.system('y')") == [2, 3]
    offenders = {
        str(path.relative_to(REPO)): found
        for path in sorted((REPO / "loratui").rglob("*.py"))
        if (found := _shell_calls(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
