"""The caption review shows file names and findings as they are: a name with [brackets] is
not read as markup."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from ui_helpers import async_test, wait_for

from loratui.app import build_app


@async_test
async def test_a_name_with_brackets_shows_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b [dim] [1].png"):
        Image.new("RGB", (64, 64), (90, 40, 10)).save(folder / name)
        (folder / name).with_suffix(".txt").write_text("zxq, a picture")
    app = build_app(folder, start="captions", defaults={"resolution": 64})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.current is not None, 30)
        await pilot.press("j")
        name = app.screen.query_one("#image-name")
        await wait_for(pilot, lambda: "b [dim] [1].png" in str(name.render()), 10)
