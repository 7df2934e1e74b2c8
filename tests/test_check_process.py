"""The wizard's full check in a child process gives the report the check gives in process, and
the same error for a folder it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from loratui.check_process import check_apart
from loratui.engine.data import lint
from loratui.engine.data.lint_rules import thresholds_for
from loratui.engine.errors import DatasetError


def test_the_check_apart_reports_what_the_check_in_process_reports(demo_dataset: Path, tmp_path: Path) -> None:
    thresholds = thresholds_for(512)
    told: list[tuple[str, int, int]] = []
    apart = check_apart(demo_dataset, "zxq", thresholds, on_progress=lambda *report: told.append(report))
    here = lint.check(demo_dataset, trigger="zxq", pixels=True, thresholds=thresholds)
    assert apart.findings == here.findings and apart.findings
    # the child's progress reaches the caller (the folder step shows it), the end included
    assert told and all(done <= total for _stage, done, total in told), told
    assert told[-1][1] == told[-1][2], told
    with pytest.raises(DatasetError, match="no such folder"):
        check_apart(tmp_path / "missing", None, thresholds)


def test_a_cancelled_check_stops_its_process_at_once(demo_dataset: Path) -> None:
    import time

    start = time.perf_counter()
    assert check_apart(demo_dataset, None, thresholds_for(512), cancelled=lambda: True) is None
    assert time.perf_counter() - start < 5  # stopped, not waited for
