"""Step 4, the run view: a live (or finished) run, followed through its ``events.jsonl``.

Started from the wizard, the screen's worker launches the run as its own process (its own
session: closing the app or a dropped SSH link leaves it going) and then follows it; opened
by ``loratui attach`` it follows an existing run. Either way the history is replayed first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, Static
from textual.worker import get_current_worker

from loratui.progress import human_seconds
from loratui.screens.follow import RunSnapshot, follow_run
from loratui.widgets.gallery import SampleGallery
from loratui.widgets.loss import LossChart
from loratui.widgets.memory import MemoryMeter
from loratui.widgets.parts_line import PartsLine
from loratui.widgets.path_text import PathText
from loratui.widgets.stepbar import StepBar

FLASH_S = {"information": 6.0, "warning": 10.0, "error": 15.0}  # how long a message line stays

def _usage_strength(strength: str) -> str:
    """The strength to write in ``<lora:name:S>``: 0.7, unless the advised range (such as
    '0.6-0.9') leaves it out, then the range's low end."""
    import re

    ends = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", strength or "")]
    if not ends or min(ends) <= 0.7 <= max(ends):
        return "0.7"
    return f"{min(ends):g}"


def _is_tiny(base_model: str) -> bool:
    """Whether the run trained loratui's tiny test model (its LoRA fits no real model)."""
    from loratui.engine.families.tiny import TINY_NAMES

    return base_model.strip() in TINY_NAMES


STATUS_STYLE = {
    "starting": "yellow", "running": "green", "finished": "blue", "stopped": "yellow",
    "failed": "red", "stale": "red",
}


class RunUpdated(Message):
    """The follower's latest view of the run; a newer one replaces any still queued."""

    def __init__(self, snapshot: RunSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunUpdated)


class RunLaunched(Message):
    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir


class RunScreen(Screen[None]):
    """Loss, memory, speed, ETA, checkpoints, samples and warnings of one run."""

    TITLE = "Train"
    HELP = (
        "The run trains in its own process: **d** (detach) quits and leaves it going, and so does a "
        "dropped SSH link; **q** asks first, then does the same. Come back with `loratui attach RUN_DIR`. "
        "**s** asks it to save a checkpoint and stop (continue later with `loratui train --resume RUN_DIR`).\n\n"
        "The chart is the smoothed training loss; each ◆ on it is a validation loss, on the same scale. "
        "The samples list (newest first) shows the highlighted image under it: **↑/↓** pick one, "
        "**Enter** opens it large, where **←/→** page through every sample of the run. Notes longer than "
        "the screen (what to do next, warnings) scroll with **PgDn**/**PgUp**."
    )
    DEFAULT_CSS = """
    RunScreen #body { height: 1fr; padding: 0 1; }
    RunScreen #status { height: auto; width: 100%; }  /* wraps: a pass makes the line long */
    /* What a toast said, in a line of its own: a toast at the top right sat on the progress bar
       and the loss line it talked about ("run finished"), anywhere else on the run's notes */
    RunScreen #flash { height: auto; width: 100%; display: none; }
    RunScreen #flash.-warning { color: $warning; }
    RunScreen #flash.-error { color: $error; }
    RunScreen ProgressBar { width: 1fr; height: 1; }
    RunScreen ProgressBar Bar { width: 1fr; }
    RunScreen #checkpoint, RunScreen #schedule { height: 1; color: $text-muted; }
    RunScreen #lower { height: 1fr; }
    RunScreen #notes-box { width: 1fr; height: 1fr; }
    RunScreen #notes { width: 1fr; height: auto; }
    RunScreen SampleGallery { width: 34; height: 1fr; display: none; margin-left: 2; }
    """
    BINDINGS = [
        Binding("s", "stop", "Stop", id="run.stop"),
        Binding("d", "detach", "Detach", id="run.detach"),
        Binding("o", "open_folder", "Run folder", id="run.open"),
        Binding("escape", "back", "Back", id="run.back"),
        Binding("q", "quit_view", "Close", id="run.quit"),
        Binding("enter", "open_sample", "Open sample", id="run.sample", show=False),
        # the notes (what to do next, warnings) outgrow an 80x24 terminal (a Static that overflowed
        # was cut, unscrollable); the gallery's list holds the focus: these keys reach past it
        Binding("pagedown", "notes(1)", "More below", id="run.notes_down", priority=True),
        Binding("pageup", "notes(-1)", "Back up", id="run.notes_up", priority=True, show=False),
    ]

    def __init__(self, run_dir: Path | None = None, config: Any = None) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.config = config
        self.snapshot = RunSnapshot(run_dir or Path("."))
        self._notified_end = False
        self._seen_live = False
        self.child_pid = 0  # the trainer this screen started (0: attached to a run, or reaped)
        self._reaping = False
        self.redraws = 0  # how many snapshots were drawn (the lag harness checks the rate)
        self._flash_timer: Any = None
        self._more_notes = False  # the notes go on below the screen's edge (the footer says so)

    def compose(self) -> ComposeResult:
        yield StepBar("run", str(self.run_dir.name) if self.run_dir else "")
        with Vertical(id="body"):
            yield Label("starting…", id="status")
            yield Static("", id="flash")
            yield ProgressBar(total=None, show_eta=False, show_percentage=True, id="progress")
            yield LossChart(id="loss")
            yield MemoryMeter(id="memory")
            yield Label("", id="checkpoint")
            with Horizontal(id="lower"):
                # not focusable: the gallery's list keeps ↑/↓; PgDn/PgUp scroll the notes past it
                with VerticalScroll(id="notes-box", can_focus=False):
                    yield Static("", id="notes")
                yield SampleGallery(id="samples")
        yield Footer()

    def on_mount(self) -> None:
        self.follow()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        """Between events (a long sample or validation pass) the phase's clock still moves."""
        s = self.snapshot
        if s.phase and s.phase_total and not s.ended:
            self.query_one("#status", Label).update(self._status_line(s))

    # -- the worker: launch (from the wizard) and follow --------------------------------------

    @work(thread=True, exit_on_error=False, group="follow", exclusive=True)
    def follow(self) -> None:
        worker = get_current_worker()
        if self.run_dir is None:
            from loratui.engine.train.launch import launch_detached, prepare_run_dir

            run_dir = prepare_run_dir(self.config)
            self.post_message(RunLaunched(run_dir))
            launched = launch_detached(self.config, run_dir)
            self.app.call_from_thread(setattr, self, "child_pid", launched.pid)
        else:
            run_dir = self.run_dir
        follow_run(run_dir, lambda snap: self.post_message(RunUpdated(snap)), lambda: worker.is_cancelled)

    def on_worker_state_changed(self, event: Any) -> None:
        from textual.worker import WorkerState

        if event.worker.group == "follow" and event.state == WorkerState.ERROR:
            exc = event.worker.error
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            hint = getattr(exc, "hint", "")
            self.snapshot = RunSnapshot(self.run_dir or Path("."), status="failed", message=message, hint=hint)
            self.render_snapshot(self.snapshot)  # the notes say why, and the hint
            self.flash("The run could not start: see below", severity="error")

    @on(RunLaunched)
    def launched(self, message: RunLaunched) -> None:
        self.run_dir = message.run_dir
        self.query_one(StepBar).set_detail(message.run_dir.name)
        self.app.run_dir = message.run_dir  # type: ignore[attr-defined]
        self.app.exit_message = self._detach_message()  # type: ignore[attr-defined]

    @on(RunUpdated)
    def updated(self, message: RunUpdated) -> None:
        self.snapshot = message.snapshot
        self.redraws += 1
        if self.run_dir is not None:
            self.app.exit_message = None if message.snapshot.ended else self._detach_message()  # type: ignore[attr-defined]
        self.render_snapshot(message.snapshot)
        self.refresh_bindings()
        if message.snapshot.ended and self.child_pid and not self._reaping:
            self._reaping = True
            self.set_interval(0.5, self._reap, repeat=40)

    def _reap(self) -> None:
        """Collect the ended trainer's exit status, so it does not stay a zombie process until
        the app exits (it is our child: nobody else can)."""
        if not self.child_pid or not hasattr(os, "WNOHANG"):
            return
        try:
            pid, _status = os.waitpid(self.child_pid, os.WNOHANG)
        except ChildProcessError:  # already collected
            pid = self.child_pid
        if pid:
            self.child_pid = 0

    # -- drawing ------------------------------------------------------------------------------

    def render_snapshot(self, s: RunSnapshot) -> None:
        self.query_one("#status", Label).update(self._status_line(s))
        self._render_rest(s)

    def flash(self, message: Any, severity: str = "information") -> None:
        """Say ``message`` (text or a Rich renderable) in the line under the status for a few
        seconds: it covers nothing, where a toast covered what it was about."""
        line = self.query_one("#flash", Static)
        line.update(message)
        line.set_classes(f"-{severity}")
        line.display = True
        if self._flash_timer is not None:
            self._flash_timer.stop()
        self._flash_timer = self.set_timer(FLASH_S.get(severity, 6.0), self._unflash)

    def _unflash(self) -> None:
        self.query_one("#flash", Static).display = False

    @staticmethod
    def _status_line(s: RunSnapshot) -> PartsLine:
        colour = STATUS_STYLE.get(s.status, "white")
        parts = [f"[{colour} b]● {s.status}[/]"]
        if s.status in ("starting", "running") and s.phase and s.phase_total:
            # a pass between steps (samples, validation) shows its own progress and how long it
            # has run: the step line stood still for minutes during them (issue 13, defect 1)
            phase = f"[b]{s.phase}[/] {s.phase_done}/{s.phase_total}"
            if s.phase_since:
                phase += f" for {human_seconds(max(0.0, time.time() - s.phase_since))}"
            parts.append(phase)
        if s.total_steps:
            parts.append(f"step {s.step}/{s.total_steps}")
        if s.epoch:
            parts.append(f"epoch {s.epoch}")
        if s.it_per_s:
            parts.append(f"{s.it_per_s:.2f} it/s")
        if s.status == "running" and s.step:
            # the step ETA leaves the passes between steps out: say so while one runs
            eta = f"ETA {human_seconds(s.eta_s)}"  # a part: the status wraps between parts only
            parts.append(eta + (" after it" if s.phase and s.phase_total else ""))
        return PartsLine(parts)

    def _render_rest(self, s: RunSnapshot) -> None:
        bar = self.query_one(ProgressBar)
        if s.total_steps:
            bar.update(total=s.total_steps, progress=s.step)
        self.query_one(LossChart).show(s.loss, s.smoothed, s.step, s.validation, s.validation_held_out)
        self.query_one(MemoryMeter).show(s.mem_used, s.mem_peak, s.mem_total, s.mem_kind)
        if s.status == "finished" and s.lora_path:
            # the final save is no checkpoint event (the run ends there): "last checkpoint: step
            # 40" stood beside a LoRA saved at step 60
            checkpoint = f"final LoRA: step {s.step} → {Path(s.lora_path).name}"
        elif s.last_checkpoint:
            checkpoint = f"last checkpoint: step {s.last_checkpoint_step} → {Path(s.last_checkpoint).name}"
        else:
            checkpoint = "no checkpoint yet"
        if s.lr:
            checkpoint += f" · lr {s.lr:.2e}"
        self.query_one("#checkpoint", Label).update(checkpoint)
        self.query_one("#notes", Static).update(self._notes(s))
        self.call_after_refresh(self._notes_scrolled)
        if s.samples:
            gallery = self.query_one(SampleGallery)
            gallery.display = True
            gallery.show(s.samples)
        if not s.ended:
            self._seen_live = True
        elif self._seen_live and not self._notified_end:  # attaching to an ended run: nothing to say
            self._notified_end = True
            severity = "information" if s.status == "finished" else "warning" if s.status == "stopped" else "error"
            what = "your LoRA and what to do next" if s.status == "finished" else "what happened"
            self.flash(f"The run {s.status}: {what} below.", severity=severity)

    def _notes(self, s: RunSnapshot) -> Group:
        parts: list[Any] = []  # Rich renderables, one or more rows each

        def say(*lines: str) -> None:
            parts.extend(Text.from_markup(line) for line in lines)

        # a command's path is shown absolute (the terminal that uses it may be anywhere) and wraps
        # only after a separator: "loratui sample /…/runs/de" | "mo" broken mid-name was no
        # command anyone could copy
        run_dir = str(s.run_dir.resolve())
        if s.status == "finished":
            name = s.lora_name
            strength = _usage_strength(s.advice_strength) or "0.7"
            say("[b green]Done.[/] Your LoRA:")
            parts.append(PathText(str(s.lora_file), indent=2))
            use = (f"as [b]<lora:{name}:{strength}>[/]"
                   + (f" with the trigger word [b]{escape(s.trigger)}[/]." if s.trigger else "."))
            if _is_tiny(s.base_model):  # as `loratui train` says it: no A1111 model has its layers
                say("It is for loratui's tiny test model: its samples are noise, as expected. Trained "
                    f"on a real base model, a LoRA is used in AUTOMATIC1111 / ComfyUI {use}")
            else:
                say(f"Use it in AUTOMATIC1111 / ComfyUI {use}")
            if s.advice_step:
                say(f"[b]Recommended:[/] step {s.advice_step} ({escape(Path(s.advice_path).name)}) at strength "
                    f"[b]{escape(s.advice_strength)}[/]",
                    f"  {escape(s.advice_reason)}")
            say("Next: compare checkpoints and strengths with")
            parts.append(PathText(run_dir, indent=2, before="loratui sample",
                                  after=f"--prompt \"{s.trigger or 'a photo'}, …\""))
        elif s.status == "stopped":
            say(f"[b yellow]Stopped.[/] {escape(s.message)}", "Continue with:")
            parts.append(PathText(run_dir, indent=2, before="loratui train --resume"))
        elif s.status in ("failed", "stale"):
            say(f"[b red]{'Failed' if s.status == 'failed' else 'Stale'}:[/] {escape(s.message)}")
            if s.hint:
                say(f"  {escape(s.hint)}")
        elif s.schedule:
            say(f"[dim]{escape(s.schedule)}[/]")
        for warning in s.warnings[-5:]:
            say(f"[yellow]warning:[/] {escape(warning)}")
        return Group(*parts)

    # -- keys ---------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        live = not self.snapshot.ended
        # Keys that make no sense now are hidden from the footer, not just greyed out.
        if action in ("stop", "detach"):
            return live
        if action == "back":
            return not live and self.config is not None
        if action == "notes":  # shown only while the notes go on below the screen's edge
            box = self.query_one("#notes-box")
            return box.scroll_y < box.max_scroll_y if parameters == (1,) else box.scroll_y > 0
        return True

    def action_notes(self, pages: int) -> None:
        box = self.query_one("#notes-box")
        box.scroll_to(y=box.scroll_y + pages * max(1, box.size.height - 1), animate=False)
        self.call_after_refresh(self._notes_scrolled)

    def _notes_scrolled(self) -> None:
        """The footer's "More below" follows the notes: there while they go on past the edge."""
        box = self.query_one("#notes-box")
        more = box.scroll_y < box.max_scroll_y
        if more != self._more_notes:
            self._more_notes = more
            self.refresh_bindings()

    def _detach_message(self) -> str:
        # absolute: the terminal that comes back may be anywhere by the time it is used
        where = self.run_dir.resolve() if self.run_dir else "RUN_DIR"
        return (
            f"{self.run_dir.name if self.run_dir else 'the run'} keeps training in the background.\n"
            f"  watch:  loratui attach {where}\n  stop:   loratui stop {where}"
        )

    def action_detach(self) -> None:
        self.app.exit_message = self._detach_message() if self.run_dir else None  # type: ignore[attr-defined]
        self.app.exit()

    def action_quit_view(self) -> None:
        """Close the view. A live run keeps training, which a user pressing q may not expect:
        ask first (Enter leaves it training, as d does); an ended run's view closes at once.
        Either way the terminal comes back with where the run is (the screen is gone)."""
        if self.snapshot.ended:
            self.app.exit_message = self._end_message()  # type: ignore[attr-defined]
            self.app.exit()
            return
        from loratui.screens.dialogs import ConfirmDialog

        where = str(self.run_dir.resolve()) if self.run_dir else "RUN_DIR"

        def answered(yes: bool | None) -> None:
            if yes:
                self.action_detach()

        self.app.push_screen(
            ConfirmDialog("Close the live view?",
                          "The run keeps training in the background.\n"
                          f"watch it again: loratui attach {where}\nstop it: s here, or loratui stop {where}",
                          yes="Close, keep training", no="Stay"),
            answered,
        )

    def action_open_sample(self) -> None:
        gallery = self.query_one(SampleGallery)
        if gallery.samples:
            self._open_sample(gallery.highlighted if gallery.highlighted is not None else len(gallery.samples) - 1)

    @on(SampleGallery.Opened)
    def _sample_opened(self, message: SampleGallery.Opened) -> None:
        self._open_sample(message.index)

    def _open_sample(self, index: int) -> None:
        from loratui.screens.samples import SampleViewer

        self.app.push_screen(SampleViewer(self.query_one(SampleGallery).samples, index))

    def _end_message(self) -> str | None:
        s = self.snapshot
        if s.status == "finished" and s.lora_file is not None:
            strength = _usage_strength(s.advice_strength) or "0.7"
            text = f"Your LoRA: {s.lora_file}\n  use it as <lora:{s.lora_name}:{strength}>"
            if s.trigger:
                text += f" with the trigger word {s.trigger}"
            if _is_tiny(s.base_model):
                text += "\n  (it is for loratui's tiny test model, whose samples are noise: train a real --base-model)"
            if s.advice_step:
                text += f"\n  recommended: step {s.advice_step} at strength {s.advice_strength} ({s.advice_reason})"
            return text
        if s.status == "stopped":
            return f"Stopped. Continue with: loratui train --resume {s.run_dir.resolve()}"
        if s.status in ("failed", "stale"):
            text = f"The run {s.status}: {s.message}" + (f"\n  {s.hint}" if s.hint else "")
            return text + f"\n  run folder: {s.run_dir.resolve()} (output.log has the details)"
        return None

    def action_back(self) -> None:
        self.app.goto("preset")  # type: ignore[attr-defined]

    def action_open_folder(self) -> None:
        if self.run_dir is None:
            self.flash("The run folder is not made yet.")
            return
        self.app.copy_to_clipboard(str(self.run_dir.resolve()))
        self.flash(Group(Text("Run folder (copied to the clipboard where the terminal allows it):"),
                         PathText(str(self.run_dir.resolve()), indent=2)))

    def action_stop(self) -> None:
        from loratui.screens.dialogs import ConfirmDialog

        if self.run_dir is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.request_stop()

        self.app.push_screen(
            ConfirmDialog("Stop this run?", "It saves a checkpoint first; `loratui train --resume` continues it.",
                          yes="Stop", no="Keep training"),
            answered,
        )

    @work(thread=True, exit_on_error=False, group="stop")
    def request_stop(self) -> None:
        from loratui.engine.runs.registry import request_stop

        if request_stop(self.run_dir):  # type: ignore[arg-type]
            self.app.call_from_thread(self.flash, "Asked the run to save a checkpoint and stop.")
        else:
            self.app.call_from_thread(self.flash, "The run is not running.", severity="warning")
