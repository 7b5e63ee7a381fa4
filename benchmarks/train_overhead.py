"""Training throughput side by side: our Ray Train loop against a plain PyTorch loop, and the data
pipeline against the model's consumption (plus GPU throughput with and without bf16 when a GPU
is present).

    .venv/bin/python benchmarks/train_overhead.py [--data STORE] [--workdir DIR] [--model NAME]
        [--batch-size 16] [--epochs 3] [--repeats 1] [--json benchmarks/results/train.json]

What runs, all in one process and one embedded Ray, on the same training files of one fold:

- ``ray``: ``workflows.core.training.run_training`` with 1 CPU worker (the real ``train_loop_per_worker``:
  Ray Data decodes, augments and transforms on CPU tasks; the worker reads ``iter_torch_batches``);
  samples/s as the loop itself reports them per epoch.
- ``plain``: one process, no Ray: the same Parquet rows read with pyarrow, the same
  ``BatchBuilder`` (same augmentation and input transform) called inline, the same model,
  optimiser and ``train_step``, one torch thread like the Ray worker.
- ``data``: the Ray Data pipeline alone (``transformed_dataset`` iterated, no model).
- ``model``: ``train_step`` alone on batches built beforehand (the model's consumption ceiling).

Epoch 1 of every measurement is warm-up (process start, first reads) and is left out; the
figures are the mean of the later epochs, and with ``--repeats`` the median over repeats run
alternately (plain, ray, plain, ray, ...) so machine load hits both alike. Both training loops
use ``shuffle_buffer=0``: the plain loop does not shuffle either. Ray's workers run at the
benchmark's own niceness (``RAY_worker_niceness=0``) so the two loops get the same CPU priority.

Each loop also times its waits for data: the first batch of an epoch (Ray Data starts the epoch's
streaming execution; the plain loop reads its Parquet table) and every later wait. The overhead is
printed twice: over whole epochs, and once the first batch is there (what an epoch of a real data
set, long enough to amortise the start-up, costs per sample).

Without ``--data``, a synthetic store is built in ``--workdir`` (the test store: one 16-frame video
per identity from the real photos in ../shared/media) and each video replicated ``--copies`` times,
so an epoch is long enough that per-epoch start-up does not dominate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def build_store(workdir: Path, copies: int) -> str:
    """Synthetic store (reused when present) with every video replicated ``copies`` times."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components import storage
    from components.datasets.synth.generator import SynthConfig, generate
    from components.faces.pipeline import FacePipelineConfig
    from workflows.demo import link_face_photos
    from workflows.preprocess import PreprocessConfig, run_preprocess

    base, bench = workdir / "store", workdir / f"store-x{copies}"
    if (bench / "store.json").is_file():
        return str(bench)
    if not (base / "store.json").is_file():
        faces = link_face_photos(MEDIA, workdir)
        generate(SynthConfig(out=str(workdir / "synth"), layout="manifest", faces=str(faces), overwrite=True,
                             subjects_per_identity=1, videos_per_subject=1, frames_per_video=16))
        run_preprocess(PreprocessConfig(dataset="manifest", root=str(workdir / "synth"), out=str(base),
                                        actor_cpus=0.5, face=FacePipelineConfig()))
    # Same subjects (so the same folds), each video k times under a new video name: throughput
    # does not depend on which pixels are repeated.
    for name in ("store.json", "subjects.json"):
        storage.write_text(str(bench / name), (base / name).read_text())
    for src in sorted((base / "frames").rglob("*.parquet")):
        table = pq.read_table(src)
        for i in range(copies):
            video = [f"{v}r{i}" for v in table.column("video").to_pylist()]
            ids = [s.replace(f"/{v}/", f"/{w}/") for s, v, w in
                   zip(table.column("sample_id").to_pylist(), table.column("video").to_pylist(), video)]
            out = table.set_column(table.schema.get_field_index("video"), "video", pa.array(video))
            out = out.set_column(out.schema.get_field_index("sample_id"), "sample_id", pa.array(ids))
            dst = bench / src.relative_to(base).parent / f"{src.stem}r{i}.parquet"
            dst.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(out, dst)
    return str(bench)


def _epoch_rate(rates: list[float]) -> float:
    """Mean over the epochs after the first (warm-up)."""
    later = rates[1:] or rates
    return float(statistics.fmean(later))


def _epoch(seen: int, seconds: float, first_batch_s: float, data_wait_s: float) -> dict[str, float]:
    """One epoch's figures: samples/s, and samples/s once the first batch is there (the epoch's
    start-up, which a longer epoch amortises, left out), the waits for data."""
    return {"samples_per_s": seen / seconds, "steady_samples_per_s": seen / max(seconds - first_batch_s, 1e-9),
            "first_batch_s": first_batch_s, "data_wait_s": data_wait_s}


def _summary(epochs: list[dict[str, float]]) -> dict[str, float]:
    return {k: _epoch_rate([e[k] for e in epochs]) for k in epochs[0]}


def _batches(files: list[str], info: dict[str, Any], cfg: Any, augment: bool):
    """Model batches (torch tensors) from the Parquet rows, built inline as Ray Data builds them."""
    import pyarrow.dataset as pads
    import torch

    from components.batches import BatchBuilder
    from components.models.registry import build_model
    from workflows.core.store_reader import COLUMNS, OPTIONAL_COLUMNS

    spec = build_model(cfg.model, info["aus"], **cfg.model_kwargs).input_spec()
    builder = BatchBuilder(spec, info["diff_steps"], len(info["aus"]), cfg.augment if augment else None,
                           seed=None if augment else cfg.seed)
    dataset = pads.dataset(files, format="parquet")
    # A store written before the optional columns existed lacks them (as read_store_frames allows).
    table = dataset.to_table(columns=[c for c in COLUMNS if c in dataset.schema.names or c not in OPTIONAL_COLUMNS])
    for start in range(0, table.num_rows - cfg.batch_size + 1, cfg.batch_size):  # drop_last, like the loop
        rows = table.slice(start, cfg.batch_size).to_pydict()
        out = builder(rows)
        yield {k: torch.from_numpy(v).float() for k, v in out.items() if v.dtype.kind in "fiub"}


def _model_and_optimiser(cfg: Any, aus: list[int], device: Any) -> tuple[Any, Any, Any]:
    import torch

    from components.models.registry import build_model
    from components.training import build_optimizer

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, aus, **cfg.model_kwargs).to(device)
    opt = build_optimizer(model.parameters(), cfg.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.optim.amp == "fp16")
    return model, opt, scaler


def plain_loop(files: list[str], info: dict[str, Any], cfg: Any) -> list[dict[str, float]]:
    """Per epoch figures (``_epoch``) of a single-process loop: read, BatchBuilder inline, train_step."""
    import torch

    from components.training import train_step

    device = torch.device("cpu")
    model, opt, scaler = _model_and_optimiser(cfg, info["aus"], device)
    epochs = []
    for _ in range(cfg.epochs):
        t0, seen, first, waited = time.perf_counter(), 0, None, 0.0
        asked = t0
        for step, batch in enumerate(_batches(files, info, cfg, augment=True)):
            wait = time.perf_counter() - asked
            if cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch:
                break
            first = wait if first is None else first
            waited += wait
            train_step(model, batch, opt, scaler, cfg.optim, device)
            seen += len(batch["labels"])
            asked = time.perf_counter()
        epochs.append(_epoch(seen, time.perf_counter() - t0, first or 0.0, waited))
    return epochs


def ray_loop(cfg: Any, tag: str) -> list[dict[str, float]]:
    """Per epoch figures (``_epoch``) of our Ray Train loop (1 worker), from its own history."""
    from workflows.train import run_training

    summary = run_training(replace(cfg, name=f"bench-{tag}-{int(time.time())}"))
    return [_epoch(h["samples_all_workers"], h["samples_all_workers"] / h["samples_per_s"], h["first_batch_s"],
                   h["data_wait_s"]) for h in summary["history"]]


def data_only(files: list[str], info: dict[str, Any], cfg: Any) -> list[float]:
    """Samples/s per epoch of the data path alone: Ray Data's decode, then the worker's batched
    augmentation and input transform on this process's CPU (no model)."""
    import torch

    from components.models.registry import build_model
    from workflows.core.store_reader import transformed_dataset

    from components.batches import model_batch

    spec = build_model(cfg.model, info["aus"], **cfg.model_kwargs).input_spec()
    ds = transformed_dataset(files, info, spec, cfg.data_cpus)
    rng = torch.Generator().manual_seed(cfg.seed)
    rates = []
    for _ in range(cfg.epochs):
        t0, seen = time.perf_counter(), 0
        for batch in ds.iter_torch_batches(batch_size=cfg.batch_size, drop_last=True):
            seen += len(model_batch(batch, spec, cfg.augment, rng)["labels"])
        rates.append(seen / (time.perf_counter() - t0))
    return rates


def model_only(batches: list[dict[str, Any]], info: dict[str, Any], cfg: Any, device_name: str = "cpu",
               passes: int = 3) -> tuple[float, "float | None"]:
    """(samples/s of train_step on pre-built batches, mean GPU utilisation % or None)."""
    import torch

    from components.training import train_step

    device = torch.device(device_name)
    model, opt, scaler = _model_and_optimiser(cfg, info["aus"], device)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    for b in batches[:2]:  # warm-up: allocator, cuDNN autotuning, first-call overheads
        train_step(model, b, opt, scaler, cfg.optim, device)
    sampler = _UtilisationSampler() if device.type == "cuda" else None
    _sync(device)
    t0, seen = time.perf_counter(), 0
    for _ in range(passes):
        for b in batches:
            train_step(model, b, opt, scaler, cfg.optim, device)
            seen += len(b["labels"])
    _sync(device)
    rate = seen / (time.perf_counter() - t0)
    return rate, (sampler.stop() if sampler else None)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


class _UtilisationSampler:
    """Mean GPU utilisation (%) sampled every 50 ms with NVML (via torch) or nvidia-smi."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> "float | None":
        import torch

        try:
            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - pynvml missing: fall back to the CLI
            import subprocess

            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=2).stdout
                return float(out.split()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return None

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            v = self._read()
            if v is not None:
                self.samples.append(v)

    def stop(self) -> "float | None":
        self._stop.set()
        self._thread.join()
        return float(statistics.fmean(self.samples)) if self.samples else None


def gpu_figures(batches: list[dict[str, Any]], info: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """GPU samples/s and utilisation of train_step with float32 and with bf16 autocast."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    big = max(64, cfg.batch_size)  # a GPU needs bigger batches than the CPU figures use
    merged = [{k: torch.cat([b[k] for b in batches[i:i + big // cfg.batch_size]]) for k in batches[0]}
              for i in range(0, len(batches) - big // cfg.batch_size + 1, big // cfg.batch_size)] or batches
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "batch_size": len(merged[0]["labels"])}
    for amp in ("none", "bf16"):
        run_cfg = replace(cfg, optim=replace(cfg.optim, amp=amp))
        rate, util = model_only(merged, info, run_cfg, "cuda", passes=10)
        key = "fp32" if amp == "none" else "bf16"
        out[f"samples_per_s_{key}"], out[f"utilisation_pct_{key}"] = round(rate, 1), util
    return out


def machine() -> dict[str, Any]:
    import ray
    import torch

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="feature store (default: build a synthetic one in --workdir)")
    p.add_argument("--workdir", default="/tmp/facsflow-bench-train", help="store and runs go here")
    p.add_argument("--copies", type=int, default=6, help="replicas of each video in the built store")
    p.add_argument("--model", default="baseline_mobilenetv3_112")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    p.add_argument("--max-steps", type=int, default=0, help="cap on steps per epoch (0: the whole split)")
    p.add_argument("--repeats", type=int, default=1, help="alternate plain/ray this many times; medians")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "train.json"))
    args = p.parse_args(argv)

    from components.configuration import to_dict
    from components.store.splits import SplitConfig, load_split, store_info
    from workflows.core.runtime import ray_session, torch_single_thread
    from workflows.train import TrainConfig

    workdir = Path(args.workdir)
    # Ray starts its workers at niceness 15; on a machine shared with other work that alone makes
    # the Ray loop look many times slower than the plain loop (niceness 0). Same priority for both,
    # as on a dedicated training node where the niceness does not matter.
    os.environ.setdefault("RAY_worker_niceness", "0")
    torch_single_thread()  # the plain loop and the model figures use one thread, like a CPU worker
    with ray_session(num_cpus=os.cpu_count()):
        store = args.data or build_store(workdir, args.copies)
        cfg = TrainConfig(model=args.model, data=store, out=str(workdir / "runs"), epochs=args.epochs,
                          batch_size=args.batch_size, workers=1, worker_cpus=1.0, data_cpus=0.5,
                          shuffle_buffer=0, early_stop_patience=0, keep_best=1, max_failures=0,
                          max_steps_per_epoch=args.max_steps, split=SplitConfig(folds="kfold", k=3))
        info = store_info(store)
        files = load_split(store, info, cfg.split).files["train"]
        plain_runs, ray_runs = [], []
        for r in range(args.repeats):
            plain_runs.append(_summary(plain_loop(files, info, cfg)))
            ray_runs.append(_summary(ray_loop(cfg, str(r))))
            print(f"repeat {r + 1}: plain {plain_runs[-1]['samples_per_s']:.1f} samples/s, "
                  f"ray {ray_runs[-1]['samples_per_s']:.1f} samples/s", flush=True)
        data_rate = _epoch_rate(data_only(files, info, cfg))
        prebuilt = list(_batches(files, info, cfg, augment=True))
        if cfg.max_steps_per_epoch:
            prebuilt = prebuilt[:cfg.max_steps_per_epoch]
        model_rate, _ = model_only(prebuilt, info, cfg)
        gpu = gpu_figures(prebuilt, info, cfg)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for name, runs in (("plain", plain_runs), ("ray", ray_runs))}
    plain, ray_rate = med["plain"]["samples_per_s"], med["ray"]["samples_per_s"]
    plain_steady, ray_steady = med["plain"]["steady_samples_per_s"], med["ray"]["steady_samples_per_s"]
    result = {
        "train_samples_per_s_ray": round(ray_rate, 2), "train_samples_per_s_plain": round(plain, 2),
        "ray_overhead_pct": round(100.0 * (1.0 - ray_rate / plain), 1),
        # Once the first batch is there: what an epoch long enough to amortise its start-up costs.
        "steady_samples_per_s_ray": round(ray_steady, 2), "steady_samples_per_s_plain": round(plain_steady, 2),
        "ray_overhead_steady_pct": round(100.0 * (1.0 - ray_steady / plain_steady), 1),
        "first_batch_s": {k: round(v["first_batch_s"], 2) for k, v in med.items()},
        "data_wait_s_per_epoch": {k: round(v["data_wait_s"], 2) for k, v in med.items()},
        "data_samples_per_s": round(data_rate, 2), "model_samples_per_s": round(model_rate, 2),
        "ray_vs_model_pct": round(100.0 * (1.0 - ray_rate / model_rate), 1),
        "machine": machine(), "ray_worker_niceness": os.environ.get("RAY_worker_niceness"), "repeats": {"plain": plain_runs, "ray": ray_runs},
        "samples_per_epoch": len(prebuilt) * cfg.batch_size, "config": to_dict(cfg), "gpu": gpu,
        # The names benchmarks/scaling_plan.py reads.
        "samples_per_s_per_worker": round(ray_rate, 2), "cpus_per_worker": cfg.worker_cpus,
        "data_pipeline_samples_per_s": round(data_rate, 2),
        "gpu_samples_per_s_per_worker": gpu.get("samples_per_s_bf16"),
    }
    print(f"\ntraining, 1 worker ({cfg.model}, batch {cfg.batch_size}, {result['samples_per_epoch']} samples/epoch):")
    print(f"  Ray Train loop   {ray_rate:8.1f} samples/s")
    print(f"  plain PyTorch    {plain:8.1f} samples/s   Ray overhead {result['ray_overhead_pct']:+.1f}% (goal <= 5%)")
    print(f"  after each epoch's first batch: Ray {ray_steady:.1f}, plain {plain_steady:.1f} samples/s, "
          f"overhead {result['ray_overhead_steady_pct']:+.1f}%")
    print(f"  first batch of an epoch: Ray {result['first_batch_s']['ray']:.2f} s, plain "
          f"{result['first_batch_s']['plain']:.2f} s; waits for data per epoch: Ray "
          f"{result['data_wait_s_per_epoch']['ray']:.2f} s, plain {result['data_wait_s_per_epoch']['plain']:.2f} s")
    print("input pipeline against the model:")
    print(f"  Ray Data alone   {data_rate:8.1f} samples/s")
    print(f"  train_step alone {model_rate:8.1f} samples/s   Ray loop is {result['ray_vs_model_pct']:+.1f}% below it")
    if "skipped" in gpu:
        print(f"GPU: skipped ({gpu['skipped']})")
    else:
        print(f"GPU {gpu['device']} (batch {gpu['batch_size']}): fp32 {gpu['samples_per_s_fp32']} samples/s "
              f"({gpu['utilisation_pct_fp32']}% busy), bf16 {gpu['samples_per_s_bf16']} samples/s "
              f"({gpu['utilisation_pct_bf16']}% busy)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
