"""Bounded load test of the Serve app on 127.0.0.1, then the same while a member replica dies.

    .venv/bin/python benchmarks/serve_load.py [--ensemble DIR] [--requests 1000] [--concurrency 8]
                                              [--image PATH] [--json benchmarks/results/serve.json]

Starts a local Ray (2 CPUs) and the app in the staged layout (``AppArgs.layout``: member
deployments of their own) with two replicas of every member deployment, sends
``--requests`` image requests at a fixed concurrency and prints throughput, p50, p99 and the
error count; then does it again and kills one Member0 replica (``ray.kill``, no restart) after
a fifth of the requests: the ingress retries the failed member call once, on the surviving
replica, so success should stay at or above 99.9 %. Also reports CPU seconds spent by the Serve
processes (the driver's Ray descendants) per request, i.e. images/s per core, a figure a shared
machine's wall clock cannot give. Without ``--ensemble`` a seeded random-weight ensemble of the
test composition (MobileNetV3 image member + To-Sequence video member) is built: speed does not
depend on the weights. Results go under ``"load"`` in the JSON file (other keys are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEDIA = ROOT.parent / "shared" / "media"
RESULTS = ROOT / "benchmarks" / "results" / "serve.json"


def default_ensemble(out: Path) -> str:
    """A seeded random-weight ensemble (image + video member), as the tests build it."""
    from tests.serving_fixtures import make_ensemble

    return str(make_ensemble(out))


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def ray_cpu_seconds() -> float:
    """User + system CPU seconds of every process below this driver (its local Ray and the
    Serve replicas), read from /proc: the work done for us, whatever else runs on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1m_at_start": round(load[0], 2),
            "note": "2-core CPU machine shared with other work; wall-clock rates depend on that load, "
                    "CPU-second rates much less"}


def start_app(ensemble: str, port: int, **app: Any) -> str:
    """Local Ray on 2 CPUs and the Serve app on 127.0.0.1:port; returns the base URL."""
    from workflows.core.runtime import init_ray
    from workflows.serve.app import start

    init_ray(num_cpus=2)
    return start(ensemble, "127.0.0.1", port, app=app)


def run_load(url: str, body: bytes, ctype: str, requests: int, concurrency: int,
             during: "Callable[[], None] | None" = None, at_fraction: float = 0.2) -> dict[str, Any]:
    """``requests`` POSTs to /v1/predict from ``concurrency`` threads; ``during`` runs once after
    ``at_fraction`` of them were sent. Returns throughput, latency percentiles and errors."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    sent = [0]
    fired = threading.Event()
    client = httpx.Client(base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency))

    def one(_: int) -> None:
        with lock:
            sent[0] += 1
            fire = during is not None and not fired.is_set() and sent[0] >= requests * at_fraction
            if fire:
                fired.set()
        if fire:
            threading.Thread(target=during).start()
        t0 = time.perf_counter()
        try:
            r = client.post("/v1/predict", content=body, headers={"content-type": ctype})
            ok = r.status_code == 200
            err = "" if ok else f"HTTP {r.status_code}: {r.text[:120]}"
        except Exception as e:  # noqa: BLE001 - a failed request is what we count
            ok, err = False, f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t0
        with lock:
            (latencies if ok else errors).append(dt if ok else err)

    cpu0, t0 = ray_cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall, cpu = time.perf_counter() - t0, ray_cpu_seconds() - cpu0
    client.close()
    lat = np.asarray(latencies) * 1000
    return {"requests": requests, "concurrency": concurrency, "succeeded": len(latencies), "errors": len(errors),
            "success_rate": round(len(latencies) / requests, 5), "wall_s": round(wall, 2),
            "throughput_rps": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "serve_cpu_s": round(cpu, 1),
            "images_per_s_per_core": round(len(latencies) / cpu, 2) if cpu > 0 else None,
            "error_samples": sorted(set(errors))[:5]}


def kill_one_replica(deployment: str = "Member0") -> Callable[[], None]:
    """A callable that kills one replica actor of ``deployment`` (Serve then replaces it)."""
    import ray

    def kill() -> None:
        names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                       if a["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in a["name"])
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        print(f"  killed replica {names[0].split('#')[-1]} of {deployment} ({len(names)} were running)", flush=True)

    return kill


def update_json(path: Path, key: str, value: Any, top: "dict[str, Any] | None" = None) -> None:
    """Merge ``{key: value}`` (and ``top`` at the top level) into the JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    data.update(top or {})
    path.write_text(json.dumps(data, indent=1))


def _print(title: str, r: dict[str, Any]) -> None:
    print(f"{title}: {r['succeeded']}/{r['requests']} ok ({100 * r['success_rate']:.2f} %), "
          f"{r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}, "
          f"{r['images_per_s_per_core']} images/s per core of Serve CPU time", flush=True)
    for e in r["error_samples"]:
        print(f"  error: {e}")


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ensemble", help="ensemble folder (default: a seeded random-weight test ensemble)")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--image", default=str(MEDIA / "single_face.jpg"))
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from ray import serve

    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        ensemble = args.ensemble or default_ensemble(Path(tmp) / "ensemble")
        body = Path(args.image).read_bytes()
        # Two replicas of each member, so a killed one leaves a live one for the retry.
        url = start_app(ensemble, args.port, layout="staged", member={"min_replicas": 2, "max_replicas": 2},
                        ingress={"max_replicas": 1}, faces={"max_replicas": 1})
        try:
            for _ in range(5):  # warm every replica's first-call costs
                run_load(url, body, "image/jpeg", 8, 4)
            steady = run_load(url, body, "image/jpeg", args.requests, args.concurrency)
            _print("steady load", steady)
            killed = run_load(url, body, "image/jpeg", args.requests, args.concurrency, kill_one_replica())
            _print("one Member0 replica killed", killed)
        finally:
            serve.shutdown()
    result = {"machine": info, "ensemble": args.ensemble or "seeded random-weight test ensemble",
              "image": Path(args.image).name, "steady": steady, "replica_killed": killed}
    update_json(args.json, "load", result, {"images_per_s_per_core": steady["images_per_s_per_core"]})
    print(f"results: {args.json}")
    return 0 if steady["errors"] == 0 and killed["success_rate"] >= 0.999 else 1


if __name__ == "__main__":
    raise SystemExit(main())
