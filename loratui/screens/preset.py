"""Step 3: choose a preset. Three cards that say in plain words what each preset is for and
the numbers it gives this dataset; then base model, trigger word and name, and an "advanced"
section where any value can be overridden, validated as it is typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Collapsible, Footer, Input, Label, Static

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


@dataclass(frozen=True)
class PresetPlan:
    """The numbers one preset gives the dataset (or why it cannot be planned)."""

    preset: str
    total_steps: int = 0
    epochs: int = 0
    repeats: int = 0
    rank: int = 0
    lr: float = 0.0
    batch_size: int = 0
    resolution: int = 0
    explain: str = ""
    error: str = ""
    images_per_step: float = 0.0  # on average: a bucket's last batch may be short
    family: str = ""  # the base model's family as detected ("SDXL"), for the user to confirm


@dataclass(frozen=True)
class Hardware:
    gpu: str = ""  # name, empty without CUDA
    memory: int = 0  # bytes in all
    free: int = 0  # bytes free when looked at
    precision: str = "fp16"  # what --mixed-precision auto picks on it


@dataclass(frozen=True)
class MemoryNeed:
    """The measured GPU memory a preset's run needs, against what this GPU has free."""

    need: int  # bytes one pass of the plan's batch takes
    usable: int  # of the free memory, what a run plans with (0 without a GPU)
    fits: int  # the largest batch that fits ``usable`` (0 without a GPU)
    flops_per_image: int = 0  # the UNet's work per image of a training step


def plan_presets(state: Any, hw: Hardware | None = None) -> list[PresetPlan]:
    """Plan the run each preset would make of the dataset, with the user's overrides.

    A batch size of "auto" is planned with what it would pick on ``hw`` (the preset's batch
    without a GPU), as the run will when it starts.
    """
    from loratui.engine.errors import LoratuiError
    from loratui.engine.plan import plan_run
    from loratui.engine.presets import PRESETS

    plans = []
    for name in PRESETS:
        try:
            config = state.build_config({"preset": name})
            if config.batch_size == "auto":
                config = config.model_copy(update={"batch_size": _auto_batch(config, hw or Hardware())})
            plan = plan_run(config)
        except LoratuiError as exc:
            plans.append(PresetPlan(name, error=exc.message))
            continue
        s = plan.schedule
        per_batch = sum(plan.batches.bucket_views()) / plan.batches.batches_per_epoch
        plans.append(PresetPlan(name, s.total_steps, s.epochs, s.repeats, config.rank, config.lr,
                                config.batch_size, config.resolution, s.explain,
                                images_per_step=per_batch * config.grad_accum, family=_family_label(config)))
    return plans


def _family_label(config: Any) -> str:
    """"SDXL", "SD-1.5"…: what loratui takes the base model for (a header read at most)."""
    from loratui.engine.errors import LoratuiError
    from loratui.engine.families import FAMILIES
    from loratui.engine.models import resolve_model

    try:
        family = FAMILIES.get(resolve_model(config.base_model, allow_pickle=True).family)
    except LoratuiError:
        return ""
    return family.label if family else ""


def _auto_batch(config: Any, hw: Hardware) -> int:
    from loratui.engine.memory_plan import plan_memory, planned_batch
    from loratui.engine.models import resolve_model

    try:
        spec = resolve_model(config.base_model, config.allow_pickle)
        return plan_memory(config, spec, hw.free if hw.gpu else None, hw.precision, "adamw").batch_size
    except Exception:  # no measurable model (yet): the run decides when it starts
        return planned_batch(config)


def measure_needs(state: Any, plans: list[PresetPlan], hw: Hardware) -> dict[str, MemoryNeed | None]:
    """Each plan's GPU memory from the measured model (a second or two per new model); None
    for a plan whose model cannot be measured."""
    from loratui.engine.footprint import memory_model
    from loratui.engine.memory_plan import budget_of
    from loratui.engine.models import resolve_model

    needs: dict[str, MemoryNeed | None] = {}
    for plan in plans:
        if plan.error:
            continue
        try:
            config = state.build_config({"preset": plan.preset, "batch_size": plan.batch_size})
            spec = resolve_model(config.base_model, config.allow_pickle)
            model = memory_model(config, spec, hw.precision, "adamw")
        except Exception:  # a bad path, or a model the measurement does not understand: no figure
            needs[plan.preset] = None
            continue
        usable = budget_of(hw.free) if hw.gpu else 0
        fits = model.largest_batch(usable, max(plan.batch_size, 8)) if hw.gpu else 0
        needs[plan.preset] = MemoryNeed(model.estimate(plan.batch_size).total, usable, fits,
                                        model.unet.flops_per_image)
    return needs


def detect_hardware() -> Hardware:
    """The GPU, if torch sees one (imported here, in a worker: it takes a second)."""
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            free, total = torch.cuda.mem_get_info(0)
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            return Hardware(props.name, int(total), int(free), precision)
    except Exception:
        pass
    return Hardware()


MEASURING = MemoryNeed(-1, 0, 0)  # the card's figure while the measurement runs


def estimate(plan: PresetPlan, hw: Hardware, base_model: str, need: MemoryNeed | None) -> str:
    """Time and GPU memory for ``plan`` on ``hw``, both from the measured model; ``need`` is
    MEASURING until measured, None where it cannot be. The time is the plan's FLOPs over the
    speed this GPU reached in earlier runs, or "est." from its data-sheet peak."""
    if base_model == "tiny":
        return "tiny model: ~1 min on a CPU"
    memory = ("measuring memory…" if need is MEASURING else "memory: n/a" if need is None
              else f"needs ≈ {need.need / 2**30:.1f} GiB")
    if not hw.gpu:
        return f"no GPU: very slow on CPU · {memory}"
    if need is None or need is MEASURING:
        return memory
    text = f"{_duration(need, plan, hw)} · {need.need / 2**30:.1f} of {hw.free / 2**30:.0f} GiB free"
    if need.need > need.usable:
        text += f" (tight: {need.fits} per pass)" if need.fits else " (too big: see Advanced)"
    return text


def _duration(need: MemoryNeed, plan: PresetPlan, hw: Hardware) -> str:
    from loratui.engine.speed import run_time

    # the training steps only (not loading, caching or samples); the fixed part is < 1 %
    time = run_time(need.flops_per_image * plan.images_per_step, plan.total_steps, hw.gpu, hw.precision)
    if time is None:
        return "training time n/a"
    minutes = max(1, round(time.seconds / 60))
    return f"training ≈ {minutes} min" + ("" if time.measured else " (est.)")


class PresetCard(Static, can_focus=True):
    """One preset: what it is for, and its numbers for this dataset."""

    DEFAULT_CSS = """
    PresetCard { width: 1fr; height: 8; border: round $panel-lighten-2; padding: 0 1; }
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
        "folder, a .safetensors file, a hub id, or `tiny`), the trigger word and the run's name. Open "
        "**Advanced** to override any value; it is checked as you type (batch size takes a number or "
        "**auto**: the most images that fit the GPU). Each card's memory and time come from the "
        "model's measured cost (its memory and FLOPs); the time says **est.** until a run on this GPU "
        "has measured its speed. **ctrl+n** starts training."
    )
    DEFAULT_CSS = """
    PresetScreen #body { height: 1fr; padding: 0 1; }
    PresetScreen #cards { height: 8; }
    PresetScreen Grid { grid-size: 2; grid-columns: 14 1fr; grid-gutter: 0 1; grid-rows: 1; height: auto; }
    PresetScreen Input.-invalid { background: $error 30%; }
    PresetScreen #plan { color: $text-muted; height: auto; }
    PresetScreen #error { color: $error; height: auto; }
    PresetScreen Collapsible { padding: 0; }
    """
    BINDINGS = [
        Binding("ctrl+n", "next", "Train", id="preset.next"),
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

    def compose(self) -> ComposeResult:
        from loratui.engine.config import DEFAULT_BASE_MODEL
        from loratui.engine.presets import PRESETS

        state = self.app.state  # type: ignore[attr-defined]
        yield StepBar("preset")
        with VerticalScroll(id="body"):
            with Horizontal(id="cards"):
                for name in PRESETS:
                    yield PresetCard(name)
            yield Static("", id="plan")
            with Grid(id="basics"):
                yield Label("base model")
                yield Input(state.base_model, placeholder=DEFAULT_BASE_MODEL, id="base_model", compact=True)
                yield Label("trigger word")
                yield Input(state.trigger, placeholder="a rare word, e.g. zxq", id="trigger", compact=True)
                yield Label("name")
                yield Input(state.name, placeholder="the folder's name", id="name", compact=True)
            with Collapsible(title="Advanced: override any value", collapsed=True, id="advanced"):
                with Grid():
                    for key, label, _kind in ADVANCED:
                        value = state.overrides.get(key, state.output_dir if key == "output_dir" else "")
                        yield Label(label)
                        yield Input(str(value), placeholder="from the preset", id=f"adv-{key}", compact=True)
            yield Label("", id="error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(f"#card-{self.app.state.preset}", PresetCard).focus()  # type: ignore[attr-defined]
        self._draw_cards()
        self.replan()
        self.find_hardware()

    def on_screen_resume(self) -> None:
        state = self.app.state  # type: ignore[attr-defined]
        trigger = self.query_one("#trigger", Input)
        if trigger.value != state.trigger:  # set on the captions step meanwhile
            trigger.value = state.trigger
        if self._planned_for != state.folder:
            self.replan()

    # -- the cards ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def replan(self) -> None:
        state = self.app.state  # type: ignore[attr-defined]
        plans = plan_presets(state, self.hardware)
        self.app.call_from_thread(self._planned, state.folder, plans)

    def _planned(self, folder: Any, plans: list[PresetPlan]) -> None:
        self._planned_for = folder
        self.plans = {p.preset: p for p in plans}
        self.needs = {}
        self._draw_cards()
        if self.app.state.base_model != "tiny":  # type: ignore[attr-defined]
            self.measure(plans)

    @work(thread=True, exclusive=True, group="memory", exit_on_error=False)
    def measure(self, plans: list[PresetPlan]) -> None:
        needs = measure_needs(self.app.state, plans, self.hardware)  # type: ignore[attr-defined]
        self.app.call_from_thread(setattr, self, "needs", needs)
        self.app.call_from_thread(self._draw_cards)

    @work(thread=True, exclusive=True, group="hardware", exit_on_error=False)
    def find_hardware(self) -> None:
        hw = detect_hardware()
        self.app.call_from_thread(setattr, self, "hardware", hw)
        if hw.gpu:  # free memory changes "auto" batches and what fits
            self.app.call_from_thread(self.replan)

    def _draw_cards(self) -> None:
        from loratui.engine.presets import PRESETS

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
        plan = self.plans.get(state.preset)
        about = PRESETS[state.preset].summary
        model = f"[b]{plan.family}[/] at {plan.resolution} px · " if plan and plan.family else ""
        self.query_one("#plan", Static).update(
            f"{about}\n[dim]{model}{plan.explain}[/]" if plan and not plan.error else about
        )

    def action_choose(self, delta: int) -> None:
        from loratui.engine.presets import PRESETS

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
