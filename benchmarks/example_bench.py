"""loratui against diffusers' OWN LoRA example script, paired: same model, data and settings.

    benchmarks/example_env.sh                       # once: builds .venv-example (see there why)
    .venv-example/bin/python benchmarks/example_bench.py [--example PATH] [--family sd15|sdxl]
        [--steps 70] [--warmup 20] [--repeats 3] [--threads 1] [--keep]

The example is ``examples/text_to_image/train_text_to_image_lora.py`` (``--family sdxl``:
``train_text_to_image_lora_sdxl.py``) of diffusers. ``--example PATH`` takes a copy by path;
without it the script is downloaded at benchmark time from raw.githubusercontent.com at the
pinned commit below into a temporary folder (never kept, never committed). A local git
snapshot gives a copy with, for example,
``git -C DIFFUSERS_GIT show 58eb52c:examples/text_to_image/train_text_to_image_lora.py > /tmp/lora.py``.
The run prints the script's git blob id and whether it is the pinned version.

What runs. The benchmark builds the tiny pipeline (``tiny`` or ``tiny-sdxl``, random weights from
loratui's configs) as a diffusers folder and a dataset folder of 12 demo images (96-128 px) with
their captions twice over: ``NAME.txt`` beside each image (loratui) and ``metadata.jsonl``
(``file_name``, ``text``: the example's imagefolder, ``--caption_column text``). Each side runs
as its own process, unpatched, in this one venv (one torch): the example as
``python SCRIPT ...`` (no accelerate launch: one process), loratui as
``python -m loratui train ... --json`` (headless). Both: resolution 64, batch 2, LoRA rank 4 with
alpha 4 (the example sets alpha = rank) on to_q/to_k/to_v/to_out.0, AdamW lr 1e-4 constant
with no warm-up, max grad norm 1, fp32 (``--mixed_precision no``), seed 0, the same number of
steps, no validation, no samples, no checkpoints before the end, the example's data loader with
0 workers, and the same torch thread count (``--threads``: OMP_NUM_THREADS, which loratui
also reads).

Timing. Both sides log every step with a wall-clock time: the example through its default
tracker (``--report_to tensorboard``: ``train_loss`` per step, whose event wall time this reads
back), loratui as its ``step`` events (``t``). A run's seconds per step is
``(t[steps] - t[warmup]) / (steps - warmup)``: start-up, model loading, loratui's latent cache
and the end-of-run save all fall outside the window. Runs alternate example/loratui, the order
flipped every repeat; each side's figure is its median over repeats, the ratio loratui / example
the median of the repeats' own ratios (the ratio of the medians is printed beside it).

On a shared machine the wall time swings with the others' load (pairs from 0.65 to 2.4 in one
run here), so each run's CPU time is read too, live: the benchmark reads each side's output as
it comes (loratui's ``step`` events, the example's tqdm bar, which its ``set_postfix`` redraws
every step) and, at each step, the child's user + system CPU seconds (all its threads) from
/proc; CPU seconds per step over the same window are far steadier under load than wall seconds
(each side still pays for the cache and memory bandwidth the others take, so they are not
figures of a quiet machine either). The 1-minute load average is printed beside every run: it
counts every process on the machine, the benchmark's own included. Beside the step, each run
reports its start (process start to step 1's log) and finish (the last step's log to the exit).
Every run starts cold: its own cache folders (``LORATUI_CACHE_DIR``, ``HF_HOME``), so loratui
encodes the latents and, at the end, measures the UNet's FLOPs for its speed record (cached per
model, resolution and rank: a user pays it on the first run of a setting only) every time.

What the two sides do differently (the work each does per step, as shipped):
- The example decodes, resizes (Resize to 64 on the short side, RandomCrop 64) and normalises
  every image every step through torchvision and a ``datasets`` imagefolder, VAE-encodes the
  batch and runs the text encoder(s) every step. loratui encodes every image's latent
  distribution once before step 1 (sampled per step) and each caption's text-encoder output once
  (the encoders are frozen), so its step is the UNet's forward and backward and the optimizer.
- The example's optimizer is ``torch.optim.AdamW`` with its default (foreach) implementation;
  loratui uses the fused kernel on the CPU. Both decay weights by 1e-2.
- The SD-1.5 example hands ``clip_grad_norm_`` the ``filter`` over the LoRA parameters that the
  optimizer already consumed, so it clips nothing and computes no norm; the SDXL example clips a
  list (a real norm). loratui computes the norm and clips every step (it checks it is finite).
- Per-step logging: the example writes a tensorboard scalar and redraws a tqdm bar; loratui
  reads memory, emits a ``step`` event to ``events.jsonl`` and stdout (``--json``).
- loratui resizes with a centre crop to 64 px (``buckets = false``); the example crops at random.
- The SDXL example builds the size/crop time ids per batch from what its loader recorded;
  loratui takes each image's from its planned item per batch. Both give the UNet the same kind of
  added conditioning (the second encoder's pooled output and the six time ids).
No runtime patch is applied to the example.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

# The diffusers commit the benchmark was written against, and the git blob ids of the two
# scripts at that commit (so a copy given by path is known to be the same text, or not).
DIFFUSERS_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"
EXAMPLES = {
    "sd15": ("examples/text_to_image/train_text_to_image_lora.py", "d33908b28000d0edd76feb761c2fbbfdff916f81"),
    "sdxl": ("examples/text_to_image/train_text_to_image_lora_sdxl.py", "eafc03d698675c239f09ce4e806a0d033c406f92"),
}
RAW_URL = "https://raw.githubusercontent.com/huggingface/diffusers/{commit}/{path}"
TINY = {"sd15": "tiny", "sdxl": "tiny-sdxl"}
CAPTION_COLUMN = "text"


def fail(message: str) -> None:
    """Stop with one clear line on stderr."""
    print(f"example_bench.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's content, to compare a copy with the pinned commit's."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch_example(family: str, folder: Path) -> Path:
    """Download the family's example script at the pinned commit into ``folder``."""
    path, _ = EXAMPLES[family]
    url = RAW_URL.format(commit=DIFFUSERS_COMMIT, path=path)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
    except OSError as exc:
        fail(f"could not download {url} ({getattr(exc, 'reason', exc)}): pass --example PATH, a copy of "
             f"{path} (diffusers commit {DIFFUSERS_COMMIT[:7]})")
    target = folder / Path(path).name
    target.write_bytes(data)
    return target


def check_example(family: str, script: Path) -> str:
    """The script's blob id, and a note when it is not the pinned version."""
    if not script.is_file():
        fail(f"--example {script}: no such file: pass the path of {Path(EXAMPLES[family][0]).name}")
    blob = git_blob_id(script.read_bytes())
    pinned = EXAMPLES[family][1]
    if blob == pinned:
        return f"{script} (git blob {blob[:10]}: diffusers {DIFFUSERS_COMMIT[:10]})"
    return f"{script} (git blob {blob[:10]}: NOT the pinned {pinned[:10]} of diffusers {DIFFUSERS_COMMIT[:10]})"


def check_python() -> None:
    """The example imports torchvision and datasets: they must import here, beside this torch."""
    try:
        import datasets  # noqa: F401
        import torchvision  # noqa: F401
    except Exception as exc:  # an ImportError, or torchvision's RuntimeError beside a foreign torch
        fail(f"this Python ({sys.executable}) cannot import what the example needs ({type(exc).__name__}: "
             f"{str(exc).splitlines()[0] if str(exc) else ''}): run it with .venv-example/bin/python "
             "(benchmarks/example_env.sh builds it)")


def make_inputs(family: str, work: Path) -> tuple[Path, Path]:
    """The tiny pipeline's diffusers folder and the dataset folder both sides read."""
    os.environ["LORATUI_CACHE_DIR"] = str(work / "model-cache")
    from loratui.engine.data.demo import DEMO_TRIGGER, make_demo_dataset
    from loratui.engine.families.tiny import tiny_model_dir

    model = tiny_model_dir(TINY[family])
    data = make_demo_dataset(work / "data", count=12)
    rows = []
    for image in sorted(data.glob("*.png")):
        caption = image.with_suffix(".txt").read_text(encoding="utf-8").strip()
        assert caption.startswith(DEMO_TRIGGER)  # so --trigger leaves loratui's captions as they are
        rows.append(json.dumps({"file_name": image.name, CAPTION_COLUMN: caption}))
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return model, data


def child_env(args, cache: Path) -> dict[str, str]:
    threads = str(args.threads)
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "LORATUI_THREADS": threads,
            "LORATUI_CACHE_DIR": str(cache), "HF_HOME": str(cache / "hf"), "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONUNBUFFERED": "1"}


def example_command(args, steps: int, script: Path, model: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, str(script),
            "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(data),
            "--caption_column", CAPTION_COLUMN, "--resolution", str(args.resolution),
            "--train_batch_size", str(args.batch), "--rank", str(args.rank),
            "--learning_rate", str(args.lr), "--lr_scheduler", "constant", "--lr_warmup_steps", "0",
            "--max_train_steps", str(steps), "--checkpointing_steps", str(steps + 1),
            "--max_grad_norm", "1.0", "--mixed_precision", "no", "--dataloader_num_workers", "0",
            "--seed", "0", "--report_to", "tensorboard", "--output_dir", str(out)]


def loratui_command(args, steps: int, model: Path, data: Path, out: Path) -> list[str]:
    from loratui.engine.data.demo import DEMO_TRIGGER

    config = out.parent / "loratui-bench.toml"
    # what has no CLI flag: no validation, no min-SNR weighting (the example's default), one fixed
    # size (no buckets), the example's constant lr with no warm-up and its clip norm
    config.write_text('validation = "off"\nmin_snr_gamma = 0\nbuckets = false\nlr_scheduler = "constant"\n'
                      "warmup_steps = 0\nmax_grad_norm = 1.0\n", encoding="utf-8")
    return [sys.executable, "-m", "loratui", "train", str(data), "--preset", "pet",
            "--base-model", str(model), "--trigger", DEMO_TRIGGER, "--config", str(config),
            "--output", str(out), "--steps", str(steps), "--rank", str(args.rank),
            "--alpha", str(float(args.rank)), "--lr", str(args.lr), "--batch-size", str(args.batch),
            "--resolution", str(args.resolution), "--optimizer", "adamw", "--save-every", "0",
            "--sample-every", "0", "--mixed-precision", "no", "--seed", "0", "--no-tensorboard", "--json"]


def example_step_times(out: Path) -> dict[int, float]:
    """Wall time of each step's ``train_loss`` scalar in the example's tensorboard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(out.glob("logs/**/events.out.tfevents.*"))
    if not files:
        raise RuntimeError(f"{out}/logs: no tensorboard event file from the example")
    times: dict[int, float] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if "train_loss" in acc.Tags().get("scalars", []):
            times.update({e.step: e.wall_time for e in acc.Scalars("train_loss")})
    return times


def loratui_step_times(stdout: str) -> dict[int, float]:
    """Time of each ``step`` event loratui printed (``--json``)."""
    times: dict[int, float] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "step":
                times[event["step"]] = event["t"]
    return times


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


# the example's tqdm bar ("Steps:  40%|####      | 28/70 [...]"), redrawn every step by its set_postfix
TQDM_STEP = re.compile(r"Steps:\s*\d+%\|[^|]*\|\s*(\d+)/\d+")


def watch(stream, sink: list[str], pid: int, step_of, cpu: dict[int, float]) -> None:
    """Read a child's output as it comes; at each step it reports, note the child's CPU time."""
    pending = ""
    for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
        text = chunk.decode("utf-8", "replace")
        sink.append(text)
        pending += text
        *lines, pending = re.split(r"[\r\n]", pending)
        for line in lines:
            step = step_of(line)
            if step is not None and step not in cpu:
                try:
                    cpu[step] = cpu_seconds(pid)
                except (OSError, IndexError, ValueError):  # it has exited: no reading
                    pass


def loratui_step_of(line: str) -> int | None:
    if line.startswith('{"event": "step"'):
        return json.loads(line)["step"]
    return None


def example_step_of(line: str) -> int | None:
    match = TQDM_STEP.search(line)
    return int(match.group(1)) if match else None


def run_side(kind: str, args, script: Path, model: Path, data: Path, folder: Path) -> dict:
    """One process of one side: each step's logged wall time, the CPU time it had used when it
    reported each step (read live), when it started and ended, and the load after it."""
    out = folder / "out"
    out.mkdir(parents=True)
    cmd = (example_command(args, args.steps, script, model, data, out) if kind == "example"
           else loratui_command(args, args.steps, model, data, out))
    log = folder / "output.log"
    stdout: list[str] = []
    stderr: list[str] = []
    cpu: dict[int, float] = {}
    started = time.time()  # wall clock: the step times both sides log are wall-clock times too
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(args, folder / "cache"), cwd=folder)
    step_of = example_step_of if kind == "example" else loratui_step_of
    readers = [threading.Thread(target=watch, args=(proc.stdout, stdout, proc.pid, step_of, cpu)),
               threading.Thread(target=watch, args=(proc.stderr, stderr, proc.pid, step_of, cpu))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    code = proc.wait()
    ended = time.time()
    out_text, err_text = "".join(stdout), "".join(stderr)
    log.write_text(out_text + "\n--- stderr ---\n" + err_text, encoding="utf-8")
    if code != 0:
        print("\n".join((err_text or out_text).strip().splitlines()[-15:]), file=sys.stderr)
        fail(f"the {kind} run failed (exit {code}); its whole output: {log}")
    times = example_step_times(out) if kind == "example" else loratui_step_times(out_text)
    if args.steps not in times or args.warmup not in times:
        fail(f"the {kind} run logged steps {min(times, default=0)}-{max(times, default=0)}, not "
             f"{args.warmup} and {args.steps}; its whole output: {log}")
    return {"times": times, "cpu": cpu, "started": started, "ended": ended, "load": os.getloadavg()[0]}


def measure(kind: str, args, script: Path, model: Path, data: Path, work: Path, n: int) -> dict:
    """One repeat of one side: wall seconds per step over the window (from the step logs), the
    median step in it, and CPU seconds per step over the window (from the live readings)."""
    run = run_side(kind, args, script, model, data, work / f"{kind}-{n}")
    times, cpu = run["times"], run["cpu"]
    timed = args.steps - args.warmup
    window = [times[s] - times[s - 1] for s in range(args.warmup + 1, args.steps + 1)]
    # the readings nearest the window's ends (a bar that skips a redraw skips a reading)
    seen = [s for s in sorted(cpu) if args.warmup <= s <= args.steps]
    cpu_per_step = (cpu[seen[-1]] - cpu[seen[0]]) / (seen[-1] - seen[0]) if len(seen) > 1 and \
        seen[-1] - seen[0] >= timed // 2 else float("nan")
    return {
        "kind": kind, "repeat": n, "load": run["load"], "wall_s": run["ended"] - run["started"],
        "s_per_step": (times[args.steps] - times[args.warmup]) / timed,
        "median_step": statistics.median(window), "cpu_per_step": cpu_per_step,
        # start: process start to the first step's log (imports, loading, caching, step 1);
        # finish: the last step's log to the process's exit (saving the LoRA and what else each does)
        "start_s": times[min(times)] - run["started"], "finish_s": run["ended"] - times[args.steps],
    }


def machine() -> str:
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, help="the example script (default: download it at the pinned commit)")
    parser.add_argument("--family", choices=sorted(EXAMPLES), default="sd15")
    parser.add_argument("--steps", type=int, default=70, help="steps per run (the window ends here)")
    parser.add_argument("--warmup", type=int, default=20, help="steps before the timed window")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs, alternated")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, outputs)")
    args = parser.parse_args()
    if not 0 < args.warmup < args.steps:
        fail(f"--warmup {args.warmup} --steps {args.steps}: need 0 < warmup < steps")
    work = Path(tempfile.mkdtemp(prefix="example-bench-"))
    done = False
    try:
        script = args.example.resolve() if args.example else fetch_example(args.family, work)
        print(f"example: {check_example(args.family, script)}")
        check_python()
        print(f"machine: {machine()}; {args.threads} torch thread(s) each side")
        model, data = make_inputs(args.family, work)
        runs: list[dict] = []
        for n in range(args.repeats):
            order = ("example", "loratui") if n % 2 == 0 else ("loratui", "example")
            for kind in order:
                run = measure(kind, args, script, model, data, work, n)
                runs.append(run)
                cpu = f"  cpu {run['cpu_per_step']:.4f} s/step"
                print(f"repeat {n + 1} {kind:<8} {run['s_per_step']:.4f} s/step (median step {run['median_step']:.4f})"
                      f"{cpu}  run {run['wall_s']:5.1f} s (start {run['start_s']:4.1f}, finish {run['finish_s']:4.1f})"
                      f"  load {run['load']:.2f}", flush=True)
        report(args, runs)
        done = True
    finally:
        # a failed run's log is named in the error: its folder stays
        if args.keep or (not done and any(work.glob("*-[0-9]*/output.log"))):
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(args, runs: list[dict]) -> None:
    """Medians per side and the ratios loratui / example, of the window's wall time per step, of
    the median step, and of CPU seconds per step; the last line is a RESULTS.md table row."""
    def of(kind: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["kind"] == kind]

    figures = ["s_per_step", "median_step", "cpu_per_step"]
    med = {(k, f): statistics.median(of(k, f)) for k in ("example", "loratui") for f in figures}
    loads = [r["load"] for r in runs]
    timed = args.steps - args.warmup
    print(f"\n{'SDXL' if args.family == 'sdxl' else 'SD-1.5'} (tiny{'-sdxl' if args.family == 'sdxl' else ''}), CPU, "
          f"batch {args.batch}, {args.resolution} px, rank {args.rank}, {args.threads} thread(s): steps "
          f"{args.warmup}-{args.steps} timed ({timed}), {args.repeats} repeats, load {min(loads):.2f}-{max(loads):.2f}")
    print(f"{'side':<9}{'s/step':>9}{'median step':>13}{'cpu s/step':>12}{'run s':>8}{'start s':>9}{'finish s':>10}   (medians)")
    for kind in ("example", "loratui"):
        wall, start, finish = (statistics.median(of(kind, key)) for key in ("wall_s", "start_s", "finish_s"))
        cpu = f"{med[kind, 'cpu_per_step']:>12.4f}"
        print(f"{kind:<9}{med[kind, 's_per_step']:>9.4f}{med[kind, 'median_step']:>13.4f}{cpu}{wall:>8.1f}"
              f"{start:>9.1f}{finish:>10.1f}")
    # the figure is the median of each repeat's own ratio: a pair ran back to back, under much the
    # same load, so its ratio is steadier than the ratio of two medians taken apart
    ratios = {}
    for f in figures:
        pairs = [lo / e for lo, e in zip(of("loratui", f), of("example", f))]
        ratios[f] = statistics.median(pairs)
        print(f"ratio loratui / example, {f.replace('_', ' ')}: {ratios[f]:.2f} (median of the pairs: "
              f"{', '.join(f'{p:.2f}' for p in pairs)}; of the medians {med['loratui', f] / med['example', f]:.2f})")
    cpu = (f" {med['example', 'cpu_per_step']:.4f} | {med['loratui', 'cpu_per_step']:.4f} | "
           f"**{ratios['cpu_per_step']:.2f}** |")
    print(f"| {args.family} | {med['example', 's_per_step']:.4f} | {med['loratui', 's_per_step']:.4f} | "
          f"**{ratios['s_per_step']:.2f}** |{cpu} {timed} | {args.repeats} | {min(loads):.2f}-{max(loads):.2f} |")


if __name__ == "__main__":
    main()
