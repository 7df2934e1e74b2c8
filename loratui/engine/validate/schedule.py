"""Which sample passes a run takes between its steps.

A sample pass is a full generation (steps × prompts × 2 UNet calls for guidance, then the VAE):
on a GPU a few seconds, on a CPU it can cost as much as the training between two saves. So by
default on a CPU the passes are thinned: samples and validation together get at most a tenth
of the run. The validation pass at every save is kept (it is how the run picks its best
checkpoint, and it is cheap once batched), and so are the final samples; what the budget
leaves after them is spent on the samples at saves, spread over the run (an allowance that
grows with the steps, so an early pass cannot take it all). A pass's cost is what the last
ones took, or before any was taken, its UNet calls at the pace of a training step (a step is
about three forwards' work per image: forward and backward). An explicit ``--sample-every`` is
honoured exactly, and so is every pass on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

CHECK_SHARE = 0.10  # of the run's time, samples and validation together (default schedule on a CPU)


def estimate_pass_seconds(step_seconds: float, images_per_step: float, forwards: int) -> float:
    """A pass of ``forwards`` one-image UNet forwards, at the pace of a training step."""
    return step_seconds * forwards / (3 * max(1.0, images_per_step))


@dataclass
class SampleSchedule:
    total_steps: int
    interval: int  # steps between sample passes; 0: none
    adaptive: bool  # the default schedule on a CPU: thinned to the budget
    start: int = 0  # the step this process began at (a resumed run budgets what is left)
    share: float = CHECK_SHARE
    spent: float = 0.0  # seconds of the passes at saves taken so far
    thinned: int = 0  # passes skipped so far

    def due(self, step: int) -> bool:
        """A pass before the last step is due here (the final one comes after the final LoRA)."""
        return self.interval > 0 and step < self.total_steps and step % self.interval == 0

    def taken(self, after: int, step_seconds: float, sample_seconds: float, validation_seconds: float) -> list[int]:
        """The due steps from ``after`` on that the run will sample at: all of them, or under the
        budget, those the allowance pays for at these costs (``validation_seconds``: all the
        validation passes from ``start`` to the end)."""
        steps = [s for s in range(max(after, self.start + 1), self.total_steps) if self.due(s)]
        if not self.adaptive or not steps:
            return steps
        span = max(1, self.total_steps - self.start)
        budget = self.share / (1 - self.share) * step_seconds * span - validation_seconds - sample_seconds
        spent, chosen = self.spent, []
        for s in steps:
            if spent + sample_seconds <= budget * (s - self.start) / span:
                chosen.append(s)
                spent += sample_seconds
        return chosen

    def why(self, step: int, sample_seconds: float, step_seconds: float) -> str:
        """The warning the first thinned pass gives."""
        between = step_seconds * self.interval
        return (f"samples at step {step} skipped: on the CPU a sample pass takes ~{sample_seconds:.1f} s against "
                f"~{between:.1f} s of training between saves, so loratui keeps samples and validation under "
                f"{self.share:.0%} of the run and samples only where that allows; the final samples and every "
                "validation are kept (--sample-every N samples every N steps regardless)")
