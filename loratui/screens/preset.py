"""Step 3: choose a preset. Three cards that say in plain words what each preset is for and
the numbers it gives this dataset; then base model, trigger word and name, and an "advanced"
section where any value can be overridden, validated as it is typed."""

from __future__ import annotations

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
from loratui.widgets.ordered_keys import Field
from loratui.widgets.stepbar import StepBar

# (config key, label, kind); empty means "what the preset and the dataset give".
ADVANCED = (
    ("steps", "steps", int), ("epochs", "epochs", int), ("repeats", "repeats", int),
    ("rank", "rank", int), ("alpha", "alpha", float), ("lr", "learning rate", float),
    ("batch_size", "batch size", int), ("resolution", "resolution", int),
    ("save_every", "save every", int), ("seed", "seed", int),
    ("sample_every", "sample every", int), ("output_dir", "output folder", str),
)
SCHEDULE_KEYS = {"steps", "epochs", "repeats", "batch_size", "resolution"}
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
        "**auto**: the most images that fit the GPU). Each card's memory and time come from the "
        "model's measured cost (its memory and FLOPs, sample and validation passes included); the time "
        "says **est.** until a run on this GPU or CPU has measured its speed. **ctrl+n** starts training."
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
    PresetScreen #error { color: $error; height: auto; }
    PresetScreen Collapsible { padding: 0; }
    """
    BINDINGS = [
        Binding("ctrl+n", "next", "Train", id="preset.next"),
        Binding("ctrl+o", "pick_model", "Models", id="preset.models"),
        Binding("escape", "back", "Back", id="preset.back"),
        Binding("left", "choose(-1)", "Prev preset", id="preset.left", priority=True),
        Binding("right", "choose(1)", "Next preset", id="preset.right", priority=True),
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
                    for key, label, _kind in ADVANCED:
                        value = state.overrides.get(key, state.output_dir if key == "output_dir" else "")
                        yield Label(label)
                        yield Field(str(value), placeholder="from the preset", id=f"adv-{key}", compact=True)
            yield Label("", id="error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(f"#card-{self.app.state.preset}", PresetCard).focus()  # type: ignore[attr-defined]
        self._draw_cards()
        self.replan()
        self.find_hardware()
        self.check_model_soon(0.01)  # (a Timer of 0 s divides by zero)

    def on_screen_resume(self) -> None:
        state = self.app.state  # type: ignore[attr-defined]
        trigger = self.query_one("#trigger", Input)
        if trigger.value != state.trigger:  # set on the captions step meanwhile
            trigger.value = state.trigger
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
        self.call_after_refresh(self._even_cards)
        plan = self.plans.get(state.preset)
        about = PRESETS[state.preset].summary
        model = f"[b]{plan.family}[/] at {plan.resolution} px · " if plan and plan.family else ""
        self.query_one("#plan", Static).update(
            f"{about}\n[dim]{model}{plan.explain}[/]" if plan and not plan.error else about
        )

    def _even_cards(self) -> None:
        """As tall as the card with the most lines (each wraps at its width: at 80 columns a
        fixed height cut the person card's last line off), and all three alike."""
        cards = list(self.query(PresetCard))
        for card in cards:
            card.styles.min_height = 8
        needed = max(card.get_content_height(card.content_region.size, card.content_region.size,
                                             card.content_region.width) for card in cards)
        for card in cards:
            card.styles.min_height = max(8, needed + 2)  # + the border

    def action_choose(self, delta: int) -> None:
        from loratui.engine.planning.presets import PRESETS

        names = list(PRESETS)
        state = self.app.state  # type: ignore[attr-defined]
        self.action_pick(names[(names.index(state.preset) + delta) % len(names)])

    def action_pick(self, name: str) -> None:
        self.app.state.preset = name  # type: ignore[attr-defined]
        self.query_one(f"#card-{name}", PresetCard).focus()
        self._draw_cards()
        self._validate()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # ←/→ move the cursor in a text field; they pick a preset only when a card has focus
        if action in ("choose", "pick") and isinstance(self.focused, Input):
            return False
        return True

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
            kind = dict((k, t) for k, _, t in ADVANCED)[key]
            if key == "output_dir":
                state.output_dir = value or "loratui-runs"
            elif not value:
                state.overrides.pop(key, None)
            else:
                try:
                    state.overrides[key] = kind(value)
                except ValueError:
                    state.overrides[key] = value  # pydantic names the problem
        self._validate(event.input)
        if key in SCHEDULE_KEYS:
            self.replan()
        elif key == "base_model":
            self.replan()  # another model: other memory figures
            self.check_model_soon()

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
        self.app.call_from_thread(self._model_checked, generation, result)

    def _model_checked(self, generation: int, result: Any) -> None:
        if generation != self._model_checks:
            return
        line = self.query_one("#model-check", Static)
        line.set_class(not result.ok, "-bad")
        mark = "✓" if result.ok and result.family else "!" if result.ok else "✗"
        line.update(f"{mark} {escape(result.message)}")

    def action_pick_model(self) -> None:
        from loratui.screens.model_picker import ModelPickerDialog

        def picked(value: str | None) -> None:
            if value:
                field = self.query_one("#base_model", Input)
                field.value = value
                field.cursor_position = len(value)  # the end of a long path in view, not its start
                field.focus()

        self.app.push_screen(ModelPickerDialog(self.app.state.folder), picked)  # type: ignore[attr-defined]

    def _validate(self, field: Widget | None = None) -> Any:
        from loratui.engine.errors import LoratuiError

        error = self.query_one("#error", Label)
        for inp in self.query(Input):
            inp.remove_class("-invalid")
        try:
            config = self.app.state.build_config()  # type: ignore[attr-defined]
        except LoratuiError as exc:
            self.valid = False
            self.error_text = str(exc)
            error.update(self.error_text)
            key = exc.message.split(":")[1].split("=")[0].strip() if exc.message.count(":") >= 2 else ""
            target = next((i for i in self.query(Input) if i.id in (key, f"adv-{key}")), field)
            if target is not None:
                target.add_class("-invalid")
            return None
        self.valid = True
        self.error_text = ""
        error.update("")
        return config

    # -- Back / Next --------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.step_before("preset")  # type: ignore[attr-defined]

    def action_next(self) -> None:
        config = self._validate()
        if config is None:
            self.notify(self.error_text, title="Fix this first", severity="error")
            return
        self.app.start_run(config)  # type: ignore[attr-defined]
