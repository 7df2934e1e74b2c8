"""The CPU thread count a run computes with (train/threads.py): proportional under load."""

from __future__ import annotations

from tinyrun import tiny_config


def test_a_run_takes_the_cores_the_load_leaves_free():
    from loratui.engine.train.threads import choose_threads

    assert choose_threads(8, load=1.0, tiny=False) == 8  # only this process: every core
    assert choose_threads(8, load=4.0, tiny=False) == 5  # three others busy
    assert choose_threads(2, load=12.0, tiny=False) == 1  # a crowded machine: one thread, never zero
    assert choose_threads(16, load=0.0, tiny=False) == 16
    assert choose_threads(8, load=0.0, tiny=True) == 1  # the tiny model's operators are too small to share
    assert choose_threads(8, load=9.0, tiny=False, processes=2) == 4  # ranks compute alike: an even share


def test_the_user_setting_and_a_resumed_runs_count_win(monkeypatch):
    import torch

    from loratui.engine.train.threads import set_run_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("LORATUI_THREADS", "3")
        assert set_run_threads(tiny=True) == 3 and torch.get_num_threads() == 3
        assert set_run_threads(tiny=True, kept=2) == 2  # a resume keeps its count: the sums stay the same
        monkeypatch.delenv("LORATUI_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert set_run_threads(tiny=True, kept="x") == 1  # a damaged state.json value is ignored
    finally:
        torch.set_num_threads(before)


def test_a_resumed_run_computes_with_the_count_it_started_with(small_dataset, tmp_path, monkeypatch):
    import torch

    from loratui.engine.runs.registry import read_state

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("LORATUI_THREADS", "1")
        cfg = tiny_config(small_dataset, tmp_path / "runs", steps=4, save_every=2, validation="off",
                          sample_every=0)
        run_dir = tmp_path / "runs" / "t"

        from loratui.engine.events import StepLogged
        from loratui.engine.train.loop import train
        from loratui.engine.train.stop import StopSignal

        stop = StopSignal()
        part = train(cfg, run_dir, [lambda e: isinstance(e, StepLogged) and e.step == 2 and stop.request("t")],
                     stop=stop)
        assert part.status == "stopped" and read_state(run_dir)["cpu_threads"] == 1
        monkeypatch.setenv("LORATUI_THREADS", "2")  # the machine got quieter: the resume keeps 1
        train(cfg, run_dir, resume=True)
        assert read_state(run_dir)["cpu_threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
