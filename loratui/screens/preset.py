"""Step 3: choose a preset. Three cards that say in plain words what each preset is for and
the numbers it gives this dataset; then base model, trigger word and name, and an "advanced"
section where any value can be overridden, validated as it is typed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Collapsible, Footer, Input, Label, Static

from loratui.engine.planning.preset_plan import (
    MEASURING,
    Hardware,
    MemoryNeed,
    PresetPlan,
    detect_hardware,
    estimate,
    measure_needs,
    plan_presets,
)
from loratui.screens.advanced import (
    GROUPS, OPTIONS, SCHEDULE_KEYS, as_text, choices, method_line, parse, path_problem, shown,
)
from loratui.widgets.choice import Choice
from loratui.widgets.ordered_keys import Field
from loratui.widgets.stepbar import StepBar

PICK = Binding.Group("Preset", compact=True)
DEPENDENT = tuple(name for name, option in OPTIONS.items() if option.when is not None)
GENERAL_HELP = "←/→ picks a preset · Tab: the next field · Enter on Advanced opens it"
# the Advanced path options ctrl+o opens a picker for: the folders (with the picker's heading), a LoRA
FOLDER_PICKERS = {"reg_folder": "Pick the folder of class images", "output_dir": "Pick the folder run folders go in"}
PICKERS = frozenset({"init_lora", *FOLDER_PICKERS})
MODEL_HELP = "base model: a diffusers folder, .safetensors or hub id · ctrl+o: models found"
TAGLINES = {"person": "a face or a whole person", "style": "an art style", "pet": "a dog, a cat…"}


class PresetCard(Static, can_focus=True):
    """One preset: what it is for, and its numbers for this dataset."""

    DEFAULT_CSS = """
    PresetCard { width: 1fr; height: auto; min-height: 8; border: round $panel-lighten-2; padding: 0 1; }
    PresetCard.chosen { border: round $accent; }
    PresetCard:focus { background: $boost; }
    """

    def __init__(self, name: str) -> None:
        super().__init__(id=f"card-{name}")
        self.preset = name


class PresetScreen(Screen[None]):
    """Choose the preset, name and trigger; override anything; then train."""

    TITLE = "Choose preset"
    HELP = (
        "Pick **person**, **style** or **pet** with ←/→ (or 1, 2, 3). Each card shows what the preset "
        "gives this dataset: steps, epochs, rank and learning rate. Below: the base model (a diffusers "
        "folder, a .safetensors file, a hub id, or `tiny`; checked as you type, with its family shown under "
        "it; **ctrl+o** lists the models found on this machine and opens a file picker), the trigger "
        "word and the run's name. Open "
        "**Advanced** to override any value; it is checked as you type (batch size takes a number or "
        "**auto**: the most images that fit the GPU), in groups: schedule, data, network (LoRA, LoCon, LoHa, "
        "LoKr, DoRA; **start from** an existing LoRA), optimizer, loss and notify. In a path field (**output "
        "folder**, **class images**, **start from**) **ctrl+o** opens a picker for it; the footer says "
        "which. A choice "
        "steps with ←/→ (Backspace: back to the default); options that only matter for another choice "
        "(conv rank for LoCon, d_coef for Prodigy, huber c for a Huber loss) show up when it is made. The line "
        "at the bottom says what the focused field does; a bad value is named under its field. **ctrl+t** "
        "sends a test notification. Each card's memory and time come from the "
        "model's measured cost (its memory and FLOPs, sample and validation passes included); the time "
        "says **est.** until a run on this GPU or CPU has measured its speed. **ctrl+n** starts training; "
        "**ctrl+r** adds the run to the queue instead (run the queue with `loratui queue run`)."
    )
    DEFAULT_CSS = """
    PresetScreen #body { height: 1fr; padding: 0 1; }
    PresetScreen #cards { height: auto; }
    PresetScreen Grid { grid-size: 2; grid-columns: 14 1fr; grid-gutter: 0 1; grid-rows: 1; height: auto; }
    PresetScreen Input.-invalid { background: $error 30%; }
    PresetScreen Input:focus { background: $accent 30%; }
    PresetScreen #basics { grid-rows: auto; }
    PresetScreen #model-check { height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    PresetScreen #model-check.-bad { color: $error; }
    PresetScreen #plan { color: $text-muted; height: auto; }
    PresetScreen #advanced Grid { grid-rows: auto; }
    PresetScreen #advanced .group { column-span: 2; text-style: bold; color: $accent; }
    PresetScreen #advanced .note { height: auto; display: none; }
    PresetScreen #advanced .note.-shown { display: block; }
    PresetScreen #advanced .note.-bad { color: $error; }
    PresetScreen #advanced .note.-good { color: $success; }
    PresetScreen #help-line { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap;
                              text-overflow: ellipsis; }
    PresetScreen #error { color: $error; height: auto; width: 1fr; }
    PresetScreen Collapsible { padding: 0; }
    """
    BINDINGS = [
        Binding("left", "choose(-1)", "Prev preset", id="preset.left", priority=True, group=PICK),
        Binding("right", "choose(1)", "Next preset", id="preset.right", priority=True, group=PICK),
        Binding("ctrl+n", "next", "Train", id="preset.next"),
        Binding("ctrl+r", "queue", "Queue", id="preset.queue"),
        # ctrl+o picks for the field that has the focus: the footer names what it opens
        Binding("ctrl+o", "pick_model", "Models", id="preset.models"),
        Binding("ctrl+o", "pick_path", "Pick", id="preset.pick_path"),
        Binding("ctrl+t", "test_notify", "Test notify", id="preset.test_notify", show=False),
        Binding("escape", "back", "Back", id="preset.back"),
        Binding("1", "pick('person')", "Person", id="preset.person", show=False),
        Binding("2", "pick('style')", "Style", id="preset.style", show=False),
        Binding("3", "pick('pet')", "Pet", id="preset.pet", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.plans: dict[str, PresetPlan] = {}
        self.needs: dict[str, MemoryNeed | None] = {}
        self.hardware = Hardware()
        self.valid = True
        self.error_text = ""
        self._planned_for: Any = None
        self._generation = 0  # bumped by every replan: a slower, older plan must not overwrite a newer one
        self._model_checks = 0  # likewise for the base model's check
        self._check_timer: Any = None
        self.queued = ""  # the last "added to the queue" line
        self._notes: dict[str, tuple[str, str]] = {}  # what each field's note says now, and how
        self.config: Any = None  # the last valid RunConfig: what the dependent fields and defaults follow
        self._heights: tuple[int, int, int] = (0, 0, 0)  # (width, cards, plan): they only grow at one width
        self._left_with: dict[str, str] = {}  # the fields another step may set, as they were when left

    def compose(self) -> ComposeResult:
        from loratui.engine.config import DEFAULT_BASE_MODEL
        from loratui.engine.planning.presets import PRESETS

        state = self.app.state  # type: ignore[attr-defined]
        yield StepBar("preset")
        with VerticalScroll(id="body"):
            with Horizontal(id="cards"):
                for name in PRESETS:
                    yield PresetCard(name)
            yield Static("", id="plan")
            with Grid(id="basics"):
                yield Label("base model")
                yield Field(state.base_model, placeholder=f"default: {DEFAULT_BASE_MODEL}", id="base_model",
                            compact=True)
                yield Label("")
                yield Static("", id="model-check")  # what the model is, or why it will not train
                yield Label("trigger word")
                yield Field(state.trigger, placeholder="a rare word, e.g. zxq", id="trigger", compact=True)
                yield Label("name")
                yield Field(state.name, placeholder="the folder's name", id="name", compact=True)
            with Collapsible(title="Advanced: override any value", collapsed=True, id="advanced"):
                with Grid():
                    for title, options in GROUPS:
                        yield Label(title, classes="group")
                        for option in options:
                            yield from self._advanced_field(option.name)
            yield Label("", id="error")
        yield Static(GENERAL_HELP, id="help-line")
        yield Footer()

    def _advanced_field(self, name: str) -> ComposeResult:
        """One Advanced option's label, field and (hidden until it has something to say) note."""
        state = self.app.state  # type: ignore[attr-defined]
        option = OPTIONS[name]
        value = state.output_dir if name == "output_dir" else state.overrides.get(name)
        yield Label(option.label, id=f"label-{name}")
        if option.kind in ("choice", "bool"):
            words = choices(name)
            chosen = None if value is None else words[bool(value)] if option.kind == "bool" else str(value)
            yield Choice(words, chosen, id=f"adv-{name}")
        else:
            yield Field(as_text(name, value), placeholder="", id=f"adv-{name}", compact=True)
        yield Label("", id=f"note-pad-{name}", classes="note")  # (the label column, beside the note)
        yield Static("", id=f"note-{name}", classes="note")

    def on_mount(self) -> None:
        self.query_one(f"#card-{self.app.state.preset}", PresetCard).focus()  # type: ignore[attr-defined]
        self._draw_cards()
        self._validate()
        self.replan()
        self.find_hardware()
        self.check_model_soon(0.01)  # (a Timer of 0 s divides by zero)
        self.screen_layout_refresh_signal.subscribe(self, self._repaint_after_layout)

    def _repaint_after_layout(self, _screen: Any) -> None:
        """One whole repaint after each layout pass. When the form moves (the cards or plan lines
        above it grow as numbers arrive) while a field is being typed in, Textual's layout pass
        could leave the fields painted at their old rows: in tmux the values sat a row off their
        labels until something else redrew them. Sending every row again costs one frame."""
        self.refresh()

    def on_screen_suspend(self) -> None:
        state = self.app.state  # type: ignore[attr-defined]
        self._left_with = {key: getattr(state, key) for key in ("trigger", "base_model")}

    def on_screen_resume(self) -> None:
        state = self.app.state  # type: ignore[attr-defined]
        # set on another step meanwhile: the trigger on the captions step; the base model on the
        # folder step (tiny for the demo dataset, let go again for another folder). Compared with
        # the value this step was left with, not with the field: back from a picker, the field
        # holds the pick and the state catches up only once its change is handled. The field's
        # change replans and checks the model as typing would.
        for key, left in self._left_with.items():
            if getattr(state, key) != left:
                self.query_one(f"#{key}", Input).value = getattr(state, key)
        if self._planned_for != state.folder:
            self.replan()

    # -- the cards ----------------------------------------------------------------------------

    def replan(self) -> None:
        self._generation += 1
        self._plan(self._generation)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def _plan(self, generation: int) -> None:
        # A cancelled thread worker still runs to its end, so each result carries its generation
        state = self.app.state  # type: ignore[attr-defined]
        try:
            plans = plan_presets(state.build_config, self.hardware)
        except Exception as exc:  # a defect, not bad input: say so on the cards, never leave them stale
            from loratui.engine.families.base import first_line

            plans = [PresetPlan(name, error=f"could not plan: {first_line(exc)}") for name in self.plans or TAGLINES]
        self.app.call_from_thread(self._planned, generation, state.folder, plans)

    def _planned(self, generation: int, folder: Any, plans: list[PresetPlan]) -> None:
        if generation != self._generation:
            return
        self._planned_for = folder
        self.plans = {p.preset: p for p in plans}
        self.needs = {}
        self._draw_cards()
        self.measure(plans, generation)  # the tiny model too: its time comes from its FLOPs

    @work(thread=True, exclusive=True, group="memory", exit_on_error=False)
    def measure(self, plans: list[PresetPlan], generation: int) -> None:
        needs = measure_needs(self.app.state.build_config, plans, self.hardware)  # type: ignore[attr-defined]
        self.app.call_from_thread(self._measured, generation, needs)

    def _measured(self, generation: int, needs: dict[str, MemoryNeed | None]) -> None:
        if generation == self._generation:  # else the model or schedule changed meanwhile
            self.needs = needs
            self._draw_cards()

    @work(thread=True, exclusive=True, group="hardware", exit_on_error=False)
    def find_hardware(self) -> None:
        hw = detect_hardware()
        self.app.call_from_thread(setattr, self, "hardware", hw)
        if hw.gpu:  # free memory changes "auto" batches and what fits
            self.app.call_from_thread(self.replan)
        else:  # the CPU's threads (and the speed measured with them) time the cards
            self.app.call_from_thread(self._draw_cards)

    def _draw_cards(self) -> None:
        from loratui.engine.planning.presets import PRESETS

        state = self.app.state  # type: ignore[attr-defined]
        for name, preset in PRESETS.items():
            card = self.query_one(f"#card-{name}", PresetCard)
            card.set_class(name == state.preset, "chosen")
            mark = "●" if name == state.preset else "○"
            lines = [f"[b]{mark} {name}[/]", f"[i]{TAGLINES.get(name, '')}[/]"]
            plan = self.plans.get(name)
            if plan is None:
                lines.append("[dim]working out the numbers…[/]")
            elif plan.error:
                lines.append(f"[red]{plan.error}[/]")
            else:
                lines += [
                    f"[b]{plan.total_steps}[/] steps · {plan.epochs} epochs",
                    f"rank {plan.rank} · lr {plan.lr:g}",
                    f"[dim]{estimate(plan, self.hardware, state.base_model, self.needs.get(name, MEASURING))}[/]",
                ]
            card.update("\n".join(lines))
        self._draw_plan()
        self._show_defaults()

    def _draw_plan(self) -> None:
        from loratui.engine.planning.presets import PRESETS

        state = self.app.state  # type: ignore[attr-defined]
        plan = self.plans.get(state.preset)
        about = PRESETS[state.preset].summary
        model = f"[b]{plan.family}[/] at {plan.resolution} px · " if plan and plan.family else ""
        method = f"\n{escape(method_line(self.config, self.hardware.gpu))}" if self.config is not None else ""
        self.query_one("#plan", Static).update(
            f"{about}\n[dim]{model}{plan.explain}{method}[/]" if plan and not plan.error else about
        )
        self.call_after_refresh(self._steady_heights)

    def _steady_heights(self) -> None:
        """Cards as tall as the one with the most lines (each wraps at its width: at 80 columns
        a fixed height cut the person card's last line off), all three alike; and the plan's
        lines likewise. Neither shrinks again at this width: a card or plan line that rewrapped
        as a value was typed moved the whole form under the field being typed into, and tmux
        under load then showed the field's value a row off its label (issue 13)."""
        cards = list(self.query(PresetCard))
        plan = self.query_one("#plan", Static)
        width = cards[0].content_region.width  # the terminal's width, less the scrollbar when there is one
        if width != self._heights[0]:  # another width: measure afresh
            self._heights = (width, 0, 0)
            for card in cards:
                card.styles.min_height = 8
        needed = max(card.get_content_height(card.content_region.size, card.content_region.size,
                                             card.content_region.width) for card in cards)
        plan_rows = plan.get_content_height(plan.content_region.size, plan.content_region.size,
                                            plan.content_region.width)
        # while the numbers or the timing are still being worked out, a card's last line and the
        # plan's derivation usually take a row more once they come: keep that row from the start
        spare = 1 if len(self.plans) < len(cards) or not self.needs else 0
        cards_h = max(self._heights[1], 8, needed + 2 + spare)  # + the border
        plan_h = max(self._heights[2], plan_rows + spare)
        if (cards_h, plan_h) != self._heights[1:]:
            self._heights = (width, cards_h, plan_h)
            for card in cards:
                card.styles.min_height = cards_h
            plan.styles.min_height = plan_h

    def action_choose(self, delta: int) -> None:
        from loratui.engine.planning.presets import PRESETS

        names = list(PRESETS)
        state = self.app.state  # type: ignore[attr-defined]
        self.action_pick(names[(names.index(state.preset) + delta) % len(names)])

    def action_pick(self, name: str) -> None:
        self.app.state.preset = name  # type: ignore[attr-defined]
        self.query_one(f"#card-{name}", PresetCard).focus()
        self._validate()  # first: the plan lines name this preset's rank and network
        self._draw_cards()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # ←/→ move the cursor in a text field; they pick a preset only when a card has focus
        if action in ("choose", "pick") and isinstance(self.focused, (Input, Choice)):
            return False
        if action in ("pick_model", "pick_path"):  # one ctrl+o: a path field's own picker, else the models
            return bool(self._path_field()) == (action == "pick_path")
        return True

    def on_descendant_focus(self, event: Any) -> None:
        """The line at the bottom says what the focused Advanced field does."""
        name = (getattr(event.widget, "id", None) or "").removeprefix("adv-")
        option = OPTIONS.get(name)
        line = f"{option.label}: {escape(option.help)}" if option else MODEL_HELP if name == "base_model" \
            else GENERAL_HELP
        self.query_one("#help-line", Static).update(line)

    # -- the fields ---------------------------------------------------------------------------

    @on(Input.Changed)
    def changed(self, event: Input.Changed) -> None:
        state = self.app.state  # type: ignore[attr-defined]
        key = event.input.id or ""
        value = event.value.strip()
        if key in ("base_model", "trigger", "name"):
            setattr(state, key, value)
        elif key.startswith("adv-"):
            key = key[4:]
            if key == "output_dir":
                state.output_dir = value or "loratui-runs"
            elif not value:
                state.overrides.pop(key, None)
            else:
                state.overrides[key] = parse(key, value)  # RunConfig names what is wrong with it
        self._after_change(key, event.input)

    @on(Choice.Changed)
    def chosen(self, event: Choice.Changed) -> None:
        key = (event.choice.id or "").removeprefix("adv-")
        overrides = self.app.state.overrides  # type: ignore[attr-defined]
        if event.value is None:
            overrides.pop(key, None)
        else:
            overrides[key] = parse(key, event.value) if OPTIONS[key].kind == "bool" else event.value
        self._after_change(key, event.choice)

    def _after_change(self, key: str, field: Widget) -> None:
        self._note(key, "")  # a test result or an error said about the old value
        self._validate(field)
        if key in SCHEDULE_KEYS:
            self.replan()
        elif key == "base_model":
            self.replan()  # another model: other memory figures
            self.check_model_soon()
        elif self.config is not None:
            self._draw_plan()  # the network and optimizer it names

    def _note(self, key: str, text: str, kind: str = "bad") -> None:
        """Say ``text`` under Advanced field ``key`` ("" hides the note)."""
        if self._notes.get(key, ("", "")) == (text, kind if text else ""):
            return  # as it is: no restyle (a class change restyles the form; this runs on every key)
        self._notes[key] = (text, kind if text else "")
        notes = self.query(f"#note-{key}")
        if not notes:
            return
        note = notes.first(Static)
        note.update(escape(text))
        note.set_class(bool(text), "-shown")
        self.query_one(f"#note-pad-{key}").set_class(bool(text), "-shown")
        note.set_class(kind == "bad", "-bad")
        note.set_class(kind == "good", "-good")

    def _show_relevant(self, config: Any) -> None:
        """Show the options that apply to the choices made (conv rank for LoCon…), hide the rest."""
        for option in OPTIONS.values():
            if option.when is None:
                continue
            on = bool(option.when(config))
            for widget_id in (f"label-{option.name}", f"adv-{option.name}"):
                widget = self.query_one(f"#{widget_id}")
                if widget.display != on:
                    widget.display = on
            if not on:
                self._note(option.name, "")

    def _show_defaults(self) -> None:
        """Each empty field shows the value the run will use, as the plan works it out."""
        if self.config is None:
            return
        plan = self.plans.get(self.config.preset)
        for name in OPTIONS:
            widget = self.query_one(f"#adv-{name}")
            text = shown(name, self.config, plan)
            if isinstance(widget, Choice):
                widget.default = text
            elif isinstance(widget, Input) and widget.placeholder != f"default: {text}":
                widget.placeholder = f"default: {text}"

    # -- the base model -----------------------------------------------------------------------

    def check_model_soon(self, delay: float = 0.3) -> None:
        """Check the base model once typing pauses (a header read: cheap, but not per key)."""
        if self._check_timer is not None:
            self._check_timer.stop()
        self._model_checks += 1
        generation = self._model_checks
        self._check_timer = self.set_timer(delay, lambda: self._check_model(generation))

    @work(thread=True, exclusive=True, group="model-check", exit_on_error=False)
    def _check_model(self, generation: int) -> None:
        from loratui.engine.config import DEFAULT_BASE_MODEL
        from loratui.engine.families.discover import check_model

        text = self.app.state.base_model or DEFAULT_BASE_MODEL  # type: ignore[attr-defined]
        result = check_model(text)
        self.app.call_from_thread(self._model_checked, generation, result, text)

    def _model_checked(self, generation: int, result: Any, text: str) -> None:
        if generation != self._model_checks:
            return
        line = self.query_one("#model-check", Static)
        line.set_class(not result.ok, "-bad")
        mark = "✓" if result.ok and result.family else "!" if result.ok else "✗"
        # the field above names the model: its name again left the reason past the line's end
        line.update(f"{mark} {escape(result.message.removeprefix(f'{text}: '))}")

    def _path_field(self) -> str:
        """The path option whose field has the focus ("" for none): ctrl+o picks for it."""
        focused = self.focused
        name = (focused.id or "").removeprefix("adv-") if isinstance(focused, Input) else ""
        return name if name in PICKERS else ""

    def action_pick_model(self) -> None:
        from loratui.screens.model_picker import ModelPickerDialog

        def picked(value: str | None) -> None:
            if value:
                field = self.query_one("#base_model", Input)
                field.value = value
                field.cursor_position = len(value)  # the end of a long path in view, not its start
                field.focus()

        self.app.push_screen(ModelPickerDialog(self.app.state.folder), picked)  # type: ignore[attr-defined]

    def action_pick_path(self) -> None:
        """ctrl+o in a path field of Advanced: a picker for what it takes, starting near what is typed."""
        from loratui.screens.model_picker import FolderPickerDialog, LoraPickerDialog

        name = self._path_field()
        if not name:
            return
        field = self.query_one(f"#adv-{name}", Input)
        state = self.app.state  # type: ignore[attr-defined]
        folder = state.folder
        beside = folder.parent if folder else Path.home()
        runs = Path(state.output_dir).expanduser()

        def picked(value: str | None) -> None:
            if value:
                field.value = value
                field.cursor_position = len(value)
                field.focus()

        if name == "init_lora":  # among the runs (a finished run to continue), else beside the dataset
            self.app.push_screen(LoraPickerDialog(runs if runs.is_dir() else beside), picked)
            return
        typed = Path(field.value.strip()).expanduser() if field.value.strip() else None
        default = beside if name == "reg_folder" else Path.cwd()
        start = next((p for p in ([typed, *typed.parents] if typed else []) if p.is_dir()), default)
        self.app.push_screen(FolderPickerDialog(start, FOLDER_PICKERS[name]), picked)

    def _validate(self, field: Widget | None = None) -> Any:
        from loratui.engine.errors import LoratuiError

        error = self.query_one("#error", Label)
        for inp in self.query(".-invalid"):
            inp.remove_class("-invalid")
            self._note((inp.id or "").removeprefix("adv-"), "")
        state = self.app.state  # type: ignore[attr-defined]
        try:
            # Which dependent options apply follows from the others alone; one that does not
            # apply (conv rank once the network is lora again) leaves the config, typed value and all
            base = state.build_config({name: None for name in DEPENDENT})
            self._show_relevant(base)
            config = state.build_config({name: None for name in DEPENDENT if not OPTIONS[name].when(base)})
        except LoratuiError as exc:
            self.valid = False
            self.error_text = str(exc)
            error.update(escape(self.error_text))
            key = exc.message.split(":")[1].split("=")[0].strip() if exc.message.count(":") >= 2 else ""
            target = next((i for i in self.query("Input, Choice") if i.id in (key, f"adv-{key}")), field)
            if target is not None:
                target.add_class("-invalid")
                # under the field: what is wrong with it, without the "--key: key = value:" it sits beside
                self._note((target.id or "").removeprefix("adv-"), str(exc).split(": ", 2)[-1])
            return None
        self.config = config
        problem = path_problem(config)
        if problem is not None:  # a path RunConfig cannot check: a missing LoRA to start from
            key, message = problem
            self.valid = False
            self.error_text = f"{OPTIONS[key].label}: {message}"
            error.update(escape(self.error_text))
            self.query_one(f"#adv-{key}").add_class("-invalid")
            self._note(key, message)
            self._show_defaults()
            return None
        self.valid = True
        self.error_text = ""
        error.update("")
        self._show_defaults()
        return config

    # -- Back / Next --------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.step_before("preset")  # type: ignore[attr-defined]

    def action_queue(self) -> None:
        """Add the run as set up here to the queue (``loratui queue run`` trains it) instead of starting it."""
        from loratui.engine.errors import LoratuiError
        from loratui.engine.runs.queue import RunQueue, add_to_queue

        config = self._validate()
        if config is None:
            self.notify(escape(self.error_text), title="Fix this first", severity="error")
            return
        queue = RunQueue()
        try:
            entry = add_to_queue(config, cwd=Path.cwd(), queue=queue)
        except LoratuiError as exc:
            self.notify(escape(str(exc)), title="Not queued", severity="error")
            return
        self.queued = (f"queued as entry {entry.id} ({entry.name}) in {queue.path}: "
                       "train the queue with `loratui queue run`")
        self.notify(escape(self.queued), title="Added to the queue", timeout=12)

    def action_test_notify(self) -> None:
        config = self._validate()
        if config is None:
            self._note("notify", self.error_text)
            return
        self._note("notify", "sending a test notification…", "info")
        self._send_test(config)

    @work(thread=True, exclusive=True, group="notify-test", exit_on_error=False)
    def _send_test(self, config: Any) -> None:
        from loratui.screens.notify_test import send_test

        ok, line = send_test(config)
        self.app.call_from_thread(self._note, "notify", ("✓ " if ok else "✗ ") + line, "good" if ok else "bad")

    def action_next(self) -> None:
        config = self._validate()
        if config is None:
            self.notify(self.error_text, title="Fix this first", severity="error")
            return
        self.app.start_run(config)  # type: ignore[attr-defined]
