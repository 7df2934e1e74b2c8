"""The preset step's "send a test notification": through the engine's notifier (apprise), to
the URL in the field or, when it is empty, to where a run would notify by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratui.engine.runs.notify import NotifySink, notify_urls


class TestNotice(NotifySink):
    """The run-end notifier, saying only that loratui can reach the user."""

    __test__ = False  # not a pytest class, whatever its name

    def message(self, status: str, lines: list[str]) -> tuple[str, str]:
        return f"loratui: {status}", "\n".join(lines)


def send_test(config: Any) -> tuple[bool, str]:
    """Send one test message; (sent everywhere, one line saying what happened). Blocks on the
    network: call it from a worker."""
    urls = notify_urls(config)
    if not urls:
        return False, "no notification URL: type one (ntfy://topic, discord://id/token, json://host/path)"
    problems: list[str] = []
    run_dir = Path(config.output_dir) / (config.name or Path(config.dataset).name)
    TestNotice(urls, run_dir, warn=problems.append).send(
        "test notification", [f"loratui will tell you here when {run_dir.name} ends."], "info")
    if problems:
        return False, problems[0]
    return True, f"test notification sent ({len(urls)} URL{'s' if len(urls) > 1 else ''}): check that it arrived"
