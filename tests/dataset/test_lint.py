"""`check` on generated datasets: every finding code, on the right file, and never a crash."""

from __future__ import annotations

import pytest
from dataset_corpus import ACCEPTED, EXPECTED, TRIGGER, bomb_png, good_folder, pattern, save

from loratui.engine.errors import ConfigError, DatasetError
from loratui.engine.data.lint import check
from loratui.engine.data.lint_rules import ERROR, RULES, WARNING, Thresholds

DESIGN_CODES = {
    "not_an_image", "corrupt_image", "too_small", "extreme_aspect_ratio", "decompression_bomb",
    "duplicate", "near_duplicate", "blurry", "too_dark", "missing_caption", "empty_caption",
    "orphan_caption", "unreadable_caption", "caption_too_long", "trigger_missing", "unsafe_path",
    "too_few_images", "too_many_images_for_preset",
}


@pytest.fixture(scope="module")
def report(bad_corpus):
    return check(bad_corpus, trigger=TRIGGER)


def test_every_design_code_has_a_rule_and_a_corpus_case():
    assert DESIGN_CODES <= set(RULES)
    assert DESIGN_CODES - {"too_few_images", "too_many_images_for_preset"} <= set(EXPECTED.values())


@pytest.mark.parametrize("path,code", sorted(EXPECTED.items()))
def test_bad_corpus_reports_each_problem_on_its_file(report, path, code):
    found = {(f.path, f.code) for f in report.findings}
    assert (path, code) in found, f"{path}: expected {code}; got {[f for f in report.findings if f.path == path]}"


def test_bad_corpus_severities_and_no_stray_findings(report):
    by_path = {}
    for f in report.findings:
        assert f.severity == (ERROR if (f.code, f.path) in {("too_small", "tiny.png")} else RULES[f.code].severity)
        by_path.setdefault(f.path, set()).add(f.code)
    for name in ACCEPTED:
        assert name not in by_path, f"{name} is fine but got {by_path[name]}"
    for i in range(3, 16):  # the good images, untouched by the cases
        assert f"good_{i:02d}.png" not in by_path
    # only the files the corpus made bad have findings (the .txt of the non-UTF-8 name aside)
    assert set(by_path) - set(EXPECTED) <= {"bad\\xff.txt", "good_01.png"}
    assert not report.ok
    summary = report.to_json()["summary"]
    assert summary["verdict"] == "errors" and summary["errors"] == len(report.errors)


def test_report_json_has_the_design_structure(report, bad_corpus):
    data = report.to_json()
    assert set(data) == {"folder", "images", "findings", "summary"}
    assert data["folder"] == str(bad_corpus)
    assert data["images"] == report.images > 40
    for f in data["findings"]:
        assert set(f) == {"path", "code", "severity", "message"}
        assert f["severity"] in (ERROR, WARNING) and f["message"]


def test_clean_folder_has_no_findings(tmp_path):
    good_folder(tmp_path, 16)
    rep = check(tmp_path, trigger=TRIGGER, preset="pet")
    assert rep.findings == [] and rep.ok
    assert rep.images == rep.usable_images == rep.captioned == 16


def test_header_pass_skips_pixels_but_catches_header_problems(tmp_path):
    good_folder(tmp_path, 16)
    bomb_png(tmp_path / "bomb.png")
    data = (tmp_path / "good_00.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    save(pattern(1, (64, 64)), tmp_path / "icon.png")
    rep = check(tmp_path, pixels=False)
    codes = {(f.path, f.code) for f in rep.findings}
    assert ("bomb.png", "decompression_bomb") in codes and ("icon.png", "too_small") in codes
    assert ("cut.png", "corrupt_image") not in codes  # only decoding finds it
    assert ("cut.png", "corrupt_image") in {(f.path, f.code) for f in check(tmp_path).findings}


def test_too_few_images_is_an_error_under_five_and_a_warning_under_fifteen(tmp_path):
    good_folder(tmp_path / "three", 3)
    good_folder(tmp_path / "ten", 10)
    [few] = [f for f in check(tmp_path / "three").findings if f.code == "too_few_images"]
    assert few.severity == ERROR and few.path == "."
    [some] = [f for f in check(tmp_path / "ten", pixels=False).findings if f.code == "too_few_images"]
    assert some.severity == WARNING
    empty = tmp_path / "empty"
    empty.mkdir()
    assert {f.code for f in check(empty).findings} == {"too_few_images"}


def test_preset_image_counts(tmp_path):
    good_folder(tmp_path, 81)
    rep = check(tmp_path, preset="pet", pixels=False)
    assert [f.code for f in rep.findings] == ["too_many_images_for_preset"]
    assert rep.ok  # a warning does not block training
    style = check(tmp_path, preset="style", pixels=False)
    assert [(f.code, f.severity) for f in style.findings] == [("too_few_images", WARNING)]
    custom = check(tmp_path, preset="person", pixels=False, thresholds=Thresholds(too_many_factor=1.0))
    assert [f.code for f in custom.findings] == ["too_many_images_for_preset"]


def test_trigger_must_be_a_whole_word(tmp_path):
    good_folder(tmp_path, 15)
    (tmp_path / "good_00.txt").write_text("sksdog on a sofa")
    (tmp_path / "good_01.txt").write_text("a photo of SKS dog")
    rep = check(tmp_path, trigger="sks", pixels=False)
    assert [(f.path, f.code) for f in rep.findings] == [("good_00.png", "trigger_missing")]


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        check(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        check(tmp_path / "file.txt")
    with pytest.raises(ConfigError, match="unknown preset"):
        check(tmp_path, preset="anime")
