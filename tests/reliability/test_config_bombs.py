"""Config files built to blow up (issue 14, part 5): a YAML "billion laughs" under 1 KB ran for
minutes at 5 GB, and a 10**6-element value printed a multi-megabyte error line. Each is now one
short `error:` line within a second, from a real `loratui` process."""

from __future__ import annotations

import time

import pytest

from reliability_kit import loratui, one_clear_line

pytestmark = pytest.mark.reliability

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{','.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
) + "lora_rank: *i\n"


def _refused_fast(tmp_path, name: str, text: str) -> str:
    config = tmp_path / name
    config.write_text(text)
    started = time.monotonic()
    result = loratui("train", str(tmp_path), "--config", str(config), "--base-model", "tiny",
                     "--output", str(tmp_path / "out"), timeout=60)
    seconds = time.monotonic() - started
    line = one_clear_line(result)
    assert seconds < 20, f"took {seconds:.0f} s to refuse"
    # the longest line is the unknown-key one: its hint lists every key (about 700 characters)
    assert len(line) < 1000, f"a {len(line):,}-character error line"
    assert name in line, line
    assert not (tmp_path / "out").exists()
    return line


def test_a_billion_laughs_yaml_is_refused_at_once(tmp_path):
    """Nine aliases of nine aliases … (9**9 strings) in about 400 bytes."""
    assert len(LAUGHS) < 1024
    line = _refused_fast(tmp_path, "laughs.yaml", LAUGHS)
    assert "far more than a run config holds (limit 100,000)" in line, line
    assert int(line.split(" holds ")[1].split()[0].replace(",", "")) > 9**9, line


def test_an_alias_that_contains_itself_is_one_short_line(tmp_path):
    line = _refused_fast(tmp_path, "loop.yaml", "lora_rank: &r [*r, *r]\n")
    assert "rank = [" in line and "must be a valid integer" in line, line


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("million.yaml", "lora_rank: [" + ",".join(["0"] * 10**6) + "]\n", "over 256 KB"),
        ("million.toml", "rank = [" + ",".join(["0"] * 10**6) + "]\n", "over 256 KB"),
        ("long.yaml", "lora_rank: [" + ",".join(["0"] * 50_000) + "]\n", "rank = [0, 0, 0, 0, 0, 0, ...]"),
        ("long.toml", 'name = "' + "x" * 200_000 + '"\n', "name = 'xxxx"),
        ("key.toml", "k" * 100_000 + " = 1\n", "unknown key 'kkkk"),
        ("key.yaml", "k" * 100_000 + ": 1\n", "not valid YAML: mapping values are not allowed"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 20 else "",
)
def test_a_huge_value_is_quoted_in_one_short_line(tmp_path, name, text, says):
    """The value is quoted up to 60 characters, with an ellipsis where it is cut."""
    line = _refused_fast(tmp_path, name, text)
    assert says in line, line
    assert "…" in line or "..." in line or "KB" in line or "YAML" in line, line


def test_quote_is_bounded_however_the_value_is_built():
    from loratui.engine.config import quote

    shared: list = ["lol"] * 9
    for _ in range(9):  # 9**10 leaves if printed whole
        shared = [shared] * 9
    for value in (shared, list(range(10**6)), "x" * 10**6, {"k" * 1000: 1}, "a\nb\nc" * 1000):
        text = quote(value)
        assert len(text) <= 60 and "\n" not in text, text
    assert quote(512) == "512" and quote("pet") == "'pet'"
