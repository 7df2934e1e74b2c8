"""The stop request a run polls: SIGINT/SIGTERM/SIGHUP, ``loratui stop``'s request file, or code."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class StopSignal:
    """Set when the run should checkpoint and end as ``stopped``."""

    def __init__(self, request_file: Path | None = None) -> None:
        self.request_file = request_file
        self._event = threading.Event()
        self.reason = ""
        self._previous: dict[int, object] = {}

    def request(self, reason: str = "stop requested") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def requested(self) -> bool:
        if not self._event.is_set() and self.request_file is not None and self.request_file.exists():
            self.request("stop requested by `loratui stop`")
        return self._event.is_set()

    def install_handlers(self) -> None:
        """Turn SIGINT/SIGTERM/SIGHUP into a stop request (main thread only; elsewhere a no-op).

        SIGHUP (the terminal of a foreground run closed) saves a checkpoint like SIGTERM instead
        of killing the run where it stands. Where SIGHUP is ignored (a detached run, ``nohup``)
        it stays ignored: that run outlives its terminal.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        signals = [signal.SIGINT, signal.SIGTERM]
        hangup = getattr(signal, "SIGHUP", None)  # not on Windows
        if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
            signals.append(hangup)
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _on_signal(self, signum: int, _frame) -> None:
        if self._event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.request(f"received {signal.Signals(signum).name}")


def agreed_stop(accelerator, stop: StopSignal) -> bool:
    """Whether any process was asked to stop (all processes must stop at the same step)."""
    requested = stop.requested
    if accelerator.num_processes == 1:
        return requested
    import torch

    flag = torch.tensor([1.0 if requested else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, "max").item() > 0)
