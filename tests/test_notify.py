"""Notifications at a run's end, through apprise, to a real local webhook server."""

from __future__ import annotations

import socket

import pytest

from tinyrun import tiny_config


def _dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"json://127.0.0.1:{port}/hook"


def test_a_finished_run_notifies_a_webhook_and_a_dead_one_is_a_warning(small_dataset, tmp_path, webhook):
    from loratui.engine.runs.notify import NotifySink
    from loratui.engine.train.loop import train

    url, received = webhook
    warnings: list[str] = []
    run_dir = tmp_path / "out" / "cat"
    cfg = tiny_config(small_dataset, tmp_path / "out", steps=2, save_every=0, batch_size=1, sample_every=2,
                      sample_steps=1, name="cat")
    result = train(cfg, run_dir, [NotifySink([url, _dead_url(), "nonsense"], run_dir, warn=warnings.append)])

    assert result.status == "finished"
    [message] = received
    assert message["title"] == "loratui: cat finished" and message["type"] == "success"
    body = message["message"]
    assert "cat: finished at step 2/2" in body and "final loss: " in body and "validation loss: " in body
    assert "recommended: cat.safetensors at strength" in body and str(run_dir / "cat.safetensors") in body
    [attachment] = message["attachments"]  # the last sample image rides along where the service takes files
    assert attachment["filename"].endswith(".png") and attachment["base64"]
    assert len(warnings) == 2
    assert "failed; the run itself is not affected" in warnings[0] and "/hook" not in warnings[0]
    assert "nonsense" in warnings[1] and "not a notification URL" in warnings[1]


def test_a_failed_run_notifies_with_its_message(small_dataset, tmp_path, webhook, monkeypatch):
    from loratui.engine.errors import LoratuiError
    from loratui.engine.runs.notify import NotifySink
    from loratui.engine.train.loop import train

    url, received = webhook
    run_dir = tmp_path / "out" / "full"
    cfg = tiny_config(small_dataset, tmp_path / "out", steps=2, save_every=1, batch_size=1, sample_every=0,
                      name="full")
    monkeypatch.setenv("LORATUI_FAULTS", "disk_full@save:1")
    with pytest.raises(LoratuiError):
        train(cfg, run_dir, [NotifySink([url], run_dir)])
    [message] = received
    assert message["title"] == "loratui: full failed" and message["type"] == "failure"
    assert "fix: " in message["message"]


def test_attached_to_a_bus_its_warnings_are_run_warnings(tmp_path, monkeypatch):
    from loratui.engine.events import EventBus, RunFinished, WarningRaised
    from loratui.engine.runs.notify import attach_notifier, notify_urls

    monkeypatch.setenv("LORATUI_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("LORATUI_NOTIFY", raising=False)
    assert notify_urls() == []
    (tmp_path / "notify").write_text(f"# my webhook\n{_dead_url()}\n", encoding="utf-8")
    seen: list = []
    bus = EventBus([seen.append])
    attach_notifier(bus, None, tmp_path)
    bus.emit(RunFinished(str(tmp_path / "x.safetensors"), 1))
    assert [type(e) for e in seen] == [RunFinished, WarningRaised] and "failed" in seen[1].message
    assert len(bus.sinks) == 2  # a failed notification does not detach the notifier


def test_train_notify_tells_the_url_and_keeps_it_out_of_the_run_files(small_dataset, tmp_path, webhook):
    """``loratui train --notify URL`` end to end: the run's own bus tells the URL; a URL may
    hold a token, so it is in neither the events, the state, the run card nor the LoRA."""
    import os
    import subprocess
    import sys

    url, received = webhook
    out = tmp_path / "out"
    env = {**os.environ, "LORATUI_NOTIFY": ""}
    done = subprocess.run([sys.executable, "-m", "loratui", "train", str(small_dataset), "--base-model", "tiny",
                           "--steps", "2", "--save-every", "0", "--batch-size", "1", "--sample-every", "0",
                           "--output", str(out), "--notify", url + "?token=s3cret", "--json"],
                          capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    [message] = received
    assert message["title"].endswith(" finished")
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    for name in ("events.jsonl", "state.json", "README.md", f"{run_dir.name}.safetensors"):
        assert b"s3cret" not in (run_dir / name).read_bytes(), name
    # config.toml keeps it, readable by its owner only, so --detach and --resume notify too
    assert (run_dir / "config.toml").stat().st_mode & 0o777 == 0o600
