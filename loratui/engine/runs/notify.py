"""Tell the user when a run ends: ntfy, Discord, Telegram, Slack, e-mail or any webhook, through
apprise (one URL per service: ``ntfys://topic``, ``discord://id/token``, ``json://host/path``…).

An event sink: it gathers the run's figures from the events and sends one message when the run
finishes, fails or stops (an over-trained run's message says so). A notification that cannot
be sent is a warning in the run, never a failed run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loratui.engine.events import (
    Event, EventBus, RecommendationMade, RunFailed, RunFinished, RunStarted, RunStopped, SampleSaved, StepLogged,
    ValidationLogged, WarningRaised,
)

ENV = "LORATUI_NOTIFY"  # URLs, comma or space separated; wins over the user default
USER_DEFAULT = "notify"  # a file in the user config dir: one URL a line


def notify_urls(config: Any = None) -> list[str]:
    """The URLs to notify: the run config's ``notify`` when it has one, else ``$LORATUI_NOTIFY``,
    else the user default file (``~/.config/loratui/notify``)."""
    value = getattr(config, "notify", None) or os.environ.get(ENV)
    if not value:
        path = user_default_path()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        value = " ".join(line for line in lines if not line.lstrip().startswith("#"))
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    return [str(v).strip() for v in value if str(v).strip()]


def user_default_path() -> Path:
    env = os.environ.get("LORATUI_CONFIG_DIR")
    if env:
        return Path(env) / USER_DEFAULT
    from platformdirs import user_config_dir

    return Path(user_config_dir("loratui", appauthor=False)) / USER_DEFAULT


def attach_notifier(bus: EventBus, config: Any, run_dir: Path) -> None:
    """Add a NotifySink to ``bus`` when notification URLs are set; its warnings go on the bus."""
    urls = notify_urls(config)
    if urls:
        bus.add(NotifySink(urls, run_dir, warn=lambda message: bus.emit(WarningRaised(message))))


class NotifySink:
    """Sends one message at the run's end, with the name, status, steps, losses, the recommended
    file and, where the service takes attachments, the last sample image."""

    def __init__(self, urls: list[str], run_dir: Path, warn: Callable[[str], None] | None = None) -> None:
        self.urls = list(urls)
        self.run_dir = run_dir
        self.warn = warn or (lambda message: print(f"loratui: {message}", file=sys.stderr))
        self.name = run_dir.name
        self.step = 0
        self.total = 0
        self.loss: float | None = None
        self.validation: float | None = None
        self.recommendation: RecommendationMade | None = None
        self.sample: str | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.name, self.total = event.name, event.total_steps
        elif isinstance(event, StepLogged):
            self.step, self.total, self.loss = event.step, event.total_steps, event.loss
        elif isinstance(event, ValidationLogged):
            self.validation = event.loss
        elif isinstance(event, RecommendationMade):
            self.recommendation = event
        elif isinstance(event, SampleSaved):
            self.sample = event.path
        elif isinstance(event, RunFinished):
            over = self.recommendation is not None and self.recommendation.overtrained
            self.send("finished, over-trained" if over else "finished", [f"LoRA: {event.path}"],
                      "warning" if over else "success")
        elif isinstance(event, RunStopped):
            self.send("stopped", [f"checkpoint: {event.checkpoint}",
                                  f"continue with: loratui train --resume {self.run_dir}"], "warning")
        elif isinstance(event, RunFailed):
            self.send("failed", [event.message] + ([f"fix: {event.hint}"] if event.hint else []), "failure")

    def message(self, status: str, lines: list[str]) -> tuple[str, str]:
        """(title, body) of the notification."""
        body = [f"{self.name}: {status} at step {self.step}/{self.total}"]
        if self.loss is not None:
            body.append(f"final loss: {self.loss:.4f}")
        if self.validation is not None:
            body.append(f"validation loss: {self.validation:.4f}")
        if self.recommendation is not None:
            rec = self.recommendation
            body.append(f"recommended: {Path(rec.path).name} at strength {rec.strength} ({rec.reason})")
        body += lines
        body.append(f"run folder: {self.run_dir}")
        return f"loratui: {self.name} {status}", "\n".join(body)

    def send(self, status: str, lines: list[str], kind: str) -> None:
        """Send to every URL; a URL that is not one, or a service that fails, is a warning."""
        import apprise

        title, body = self.message(status, lines)
        attach = self.sample if self.sample and Path(self.sample).is_file() else None
        for url in self.urls:
            shown = _redacted(url)
            sender = apprise.Apprise()
            if not sender.add(url):
                self.warn(f"notification not sent: {shown} is not a notification URL apprise knows "
                          "(see https://github.com/caronc/apprise/wiki)")
                continue
            try:
                ok = sender.notify(title=title, body=body, notify_type=getattr(apprise.NotifyType, kind.upper()),
                                   attach=attach)
            except Exception as exc:  # a notifier must never fail the run
                ok = False
                shown = f"{shown} ({type(exc).__name__}: {exc})"
            if not ok:
                self.warn(f"notification to {shown} failed; the run itself is not affected")


def _redacted(url: str) -> str:
    """The URL's scheme and host only: tokens and passwords stay out of logs."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/")[0].split("@")[-1]
    return f"{scheme}://{host}/…" if rest else url
