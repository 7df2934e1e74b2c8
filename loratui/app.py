"""The Textual app: the wizard's flow (folder → captions → preset → train) and the state it
carries between the steps.

``build_app`` is the one factory the CLI and the tests both use, so tests drive the real app.
Each step is a screen installed once and switched to, so going Back and Next again finds every
field as it was left; what the steps share lives in ``WizardState``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

STEP_ORDER = ("folder", "captions", "preset")


@dataclass
class WizardState:
    """What the steps share: the folder, its check report, and the run's settings so far."""

    folder: Path | None = None
    preset: str = "person"
    trigger: str = ""
    base_model: str = ""
    name: str = ""
    output_dir: str = "loratui-runs"
    overrides: dict[str, Any] = field(default_factory=dict)  # "advanced" values the user typed
    # overrides the user did not type (the demo's): key → (value, who set it)
    given: dict[str, tuple[Any, str]] = field(default_factory=dict)
    report: Any = None  # the lint CheckReport of ``folder`` (set by the folder step)
    warnings_accepted: bool = False

    def origin(self, key: str) -> str:
        """Who set the override ``key``: "set in Advanced", or who gave it (while unchanged)."""
        value, by = self.given.get(key, (None, ""))
        return by if by and self.overrides.get(key) == value else "set in Advanced"

    def build_config(self, extra: dict[str, Any] | None = None):
        """The validated RunConfig for the choices so far (ConfigError: one line)."""
        from loratui.engine.config import build_config

        values: dict[str, Any] = dict(
            base_model=self.base_model or None, trigger=self.trigger or None, name=self.name or None,
            output_dir=self.output_dir,
        )
        values.update(self.overrides)
        values.update(extra or {})
        return build_config(str(self.folder) if self.folder else None, self.preset, overrides=values)


def load_keymap() -> dict[str, str]:
    """User key remaps: ``binding id = "keys"`` lines in ``keymap.toml`` (posting-style).

    Looked for at ``$LORATUI_KEYMAP``, else in the user config dir; a broken file is ignored
    (the app must open) and reported by the caller as a notification.
    """
    import tomllib

    path_env = os.environ.get("LORATUI_KEYMAP")
    if path_env:
        path = Path(path_env)
    else:
        from platformdirs import user_config_dir

        path = Path(user_config_dir("loratui", appauthor=False)) / "keymap.toml"
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


class LoratuiApp(App[str | None]):
    """The wizard. ``start`` is the first step ("folder", "captions", "preset") or "run"."""

    TITLE = "loratui"
    CSS = """
    Screen { layout: vertical; }
    .panel { border: round $primary-darken-1; padding: 0 1; }
    .panel:focus-within { border: round $accent; }
    .muted { color: $text-muted; }
    .error-text { color: $error; }
    .warning-text { color: $warning; }
    .ok-text { color: $success; }
    Footer { height: 1; }
    /* Toasts at the top right, under the step bar: at the bottom right they sat on the caption
       being edited, the error line of the preset form and the findings they talked about. */
    ToastRack { dock: top; align: right top; margin-top: 1; margin-bottom: 0; }
    """
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", id="app.help"),
        # not in the footer: every step's keys must fit 80 columns; Help and the palette list it
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
    ]

    def __init__(
        self,
        state: WizardState,
        start: str = "folder",
        run_dir: Path | None = None,
        browse_root: Path | None = None,
    ) -> None:
        super().__init__()
        self.state = state
        self.start = start
        self.run_dir = run_dir
        self.browse_root = browse_root or Path.cwd()
        self.exit_message: str | None = None  # printed by the CLI once the terminal is back
        self.found_trigger = ""  # the trigger taken from the captions at start (not the user's)
        self._steps: set[str] = set()

    def on_mount(self) -> None:
        try:
            self.set_keymap(load_keymap())
        except Exception as exc:  # a broken keymap must not keep the app from opening
            self.notify(f"keymap.toml ignored: {exc}", severity="warning")
        if self.start == "run":
            from loratui.screens.run import RunScreen

            self.push_screen(RunScreen(run_dir=self.run_dir))
        else:
            self.goto(self.start)
        if self.start == "captions" and self.state.folder is not None and not self.state.trigger:
            self.find_trigger(self.state.folder)  # the folder step, skipped, would have found it

    @work(thread=True, exit_on_error=False, group="trigger")
    def find_trigger(self, folder: Path) -> None:
        """As `loratui train` and the folder step do: with no trigger word named, the first tag
        every caption shares is the trigger (`loratui review FOLDER` trained without one)."""
        from loratui.screens.folder import found_trigger

        found = found_trigger(folder)
        if found:
            self.call_from_thread(self._trigger_found, found)

    def _trigger_found(self, found: str) -> None:
        if not self.state.trigger:  # unless one was set meanwhile (t on the captions step)
            self.state.trigger = self.found_trigger = found

    # -- keys that arrive while the focus moves ------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        # A key reaches the app only when the widget it was sent to did not take it: a preset
        # card, a list. If a field has the focus now, the key was typed after a Tab that had not
        # moved the focus yet when the app sent it on (``Tab Tab Tab /data/x`` lost the path).
        from loratui.widgets.ordered_keys import reroute

        if reroute(self, event):
            event.prevent_default()

    def on_paste(self, event: events.Paste) -> None:
        from loratui.widgets.ordered_keys import reroute

        if reroute(self, event):
            event.prevent_default()

    # -- the flow -----------------------------------------------------------------------------

    def _make_step(self, step: str) -> Screen:
        if step == "folder":
            from loratui.screens.folder import FolderScreen

            return FolderScreen()
        if step == "captions":
            from loratui.screens.captions import CaptionsScreen

            return CaptionsScreen()
        if step == "preset":
            from loratui.screens.preset import PresetScreen

            return PresetScreen()
        raise ValueError(f"unknown step {step!r}")

    def goto(self, step: str) -> None:
        """Show wizard step ``step`` (made once, then kept, so it keeps what was typed)."""
        if step not in self._steps:
            self.install_screen(self._make_step(step), step)
            self._steps.add(step)
        if len(self.screen_stack) <= 1:
            self.push_screen(step)
        else:
            self.switch_screen(step)

    def step_after(self, step: str) -> None:
        order = STEP_ORDER
        self.goto(order[min(order.index(step) + 1, len(order) - 1)])

    def step_before(self, step: str) -> None:
        order = STEP_ORDER
        if order.index(step) > 0:
            self.goto(order[order.index(step) - 1])

    def start_run(self, config: Any) -> None:
        """Leave the wizard for the run view, which launches ``config`` as its own process."""
        from loratui.screens.run import RunScreen

        self.switch_screen(RunScreen(config=config))

    # -- app-wide actions ---------------------------------------------------------------------

    def action_help(self) -> None:
        from loratui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.clear_notifications()  # a toast left over from the step would sit on the help
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Keys and what this step does", self.action_help)
        if self.start != "run":
            for step, label in (("folder", "Pick folder"), ("captions", "Review captions"), ("preset", "Choose preset")):
                if step in self._steps or step == "folder":
                    yield SystemCommand(f"Go to: {label}", f"Back to the {step} step", lambda s=step: self.goto(s))
        for binding in screen.BINDINGS:
            if isinstance(binding, Binding) and binding.description and binding.show:
                yield SystemCommand(
                    binding.description, f"key: {binding.key}", lambda a=binding.action, s=screen: self.run_action(a, s)
                )


def build_app(
    folder: Path | None = None,
    *,
    start: str = "folder",
    run_dir: Path | None = None,
    demo: bool = False,
    output_dir: Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> LoratuiApp:
    """The app for ``loratui [FOLDER]`` (start="folder"), ``review`` ("captions"), ``attach``
    ("run", with ``run_dir``) and ``demo`` (the generated dataset and the tiny model)."""
    state = WizardState(folder=folder.resolve() if folder else None)
    if output_dir is not None:
        state.output_dir = str(output_dir)
    if demo:
        from loratui.engine.data.demo import DEMO_TRIGGER, make_demo_dataset
        from loratui.engine.paths import cache_dir

        state.folder = make_demo_dataset(cache_dir() / "demo-dataset").resolve()
        state.preset, state.trigger, state.base_model, state.name = "pet", DEMO_TRIGGER, "tiny", "demo"
        demo_settings = dict(resolution=64, steps=60, save_every=20, batch_size=2)
        state.overrides.update(demo_settings)
        state.given.update({k: (v, "the demo's setting for its tiny model") for k, v in demo_settings.items()})
    if defaults:
        defaults = dict(defaults)
        for key in ("preset", "trigger", "base_model", "name", "output_dir"):
            if key in defaults:
                setattr(state, key, defaults.pop(key))
        state.overrides.update(defaults)
    browse_root = state.folder if state.folder else Path.cwd()
    return LoratuiApp(state, start=start, run_dir=run_dir, browse_root=browse_root)
