"""Ray bootstrap shared by every workflow.

No address (and no RAY_ADDRESS) starts an embedded local Ray instance with
``ray.init(address="local")``: a plain ``ray.init()`` would attach to any cluster that
``ray start`` left running on the machine. ``--address`` / RAY_ADDRESS connects to a cluster;
Ray 2.60 clusters run with token authentication, and a missing token is reported with what to do.

The console belongs to facsflow's own progress lines. Ray's logs (driver-side Ray loggers,
worker and actor output) go to files whose folder is printed when Ray starts; ``--verbose`` or
``FACSFLOW_VERBOSE=1`` shows them on the console again. Ray warnings and errors reach the
console unless ``HARMLESS_RAY_WARNINGS`` names them. SIGTERM and SIGINT end a command through
the same path as Ctrl-C (``StopRequested``), so every ``finally`` runs and Ray shuts down.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from components.errors import UserError
from workflows.core.stderr_filter import (filter_native_stderr, filter_ray_driver_lines, restore_native_stderr,
                                     restore_ray_driver_lines)

log = logging.getLogger("facsflow")

__all__ = ["UserError", "StopRequested", "init_ray", "ray_session", "resolve_address", "configure_logging",
           "run_main", "torch_single_thread", "verbose_requested", "install_stop_handlers",
           "check_resources", "wait_until_stopped", "HARMLESS_RAY_WARNINGS", "QUIET_CLIENT_LOGGERS", "VERBOSE_ENV",
           "RAY_LOG_FILE"]

VERBOSE_ENV = "FACSFLOW_VERBOSE"
"""Environment variable that, set to 1/true/yes, shows Ray's logs on the console (as ``--verbose``)."""

RAY_LOG_FILE = "facsflow-ray-driver.log"
"""File (in Ray's session log folder) that takes the driver-side Ray log records."""

HARMLESS_RAY_WARNINGS: tuple[tuple[str, str], ...] = (
    # init_ray creates the token on a new local cluster and keeps it owner-only (_owner_only).
    ("ray._private.authentication", "Token authentication is enabled"),
    # Our own epoch lines and the preprocess progress line replace Ray Data's progress output.
    ("ray.data", "Progress bars disabled"),
    # Ray Data's metrics actor got a dataset's metrics before its registration (seen on a loaded
    # 2-core machine, dozens of tracebacks); the data themselves are unaffected.
    ("ray._private.worker", "_StatsActor.update_execution_metrics"),
)
"""(logger name prefix, message text) of Ray warnings and errors that are known and harmless
here: they go to the log file only. Any other Ray warning or error still reaches the console."""


_CLI = {"console": False}
"""True while ``run_main`` runs a command: the console is ours, so Ray's native stderr lines and
driver ``(raylet)`` lines that ``workflows.core.stderr_filter`` names go to the log file (a library
caller's console is left alone)."""


class StopRequested(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived: unwinds like Ctrl-C, so ``finally`` blocks shut Ray down."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


def _raise_stop(signum: int, frame: Any) -> None:
    raise StopRequested(signum)


def install_stop_handlers() -> dict[int, Any]:
    """Turn SIGTERM and SIGINT into ``StopRequested`` in the main thread (no-op elsewhere);
    return the handlers they replace.

    Called again after ``ray.init``: Ray installs its own SIGTERM handler there (``sys.exit``),
    and Kubernetes stops pods with SIGTERM, which must end the command as cleanly as Ctrl-C.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}


def verbose_requested(flag: bool = False) -> bool:
    """True when ``--verbose`` was given or ``FACSFLOW_VERBOSE`` is 1/true/yes."""
    return bool(flag) or os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


class _RayConsoleFilter(logging.Filter):
    """On Ray's console handlers: keep warnings and errors, drop those ``HARMLESS_RAY_WARNINGS``
    names and everything below WARNING (those records still reach ``RAY_LOG_FILE``).

    Records of other loggers pass untouched: a handler Ray's loggers share with the application
    (a root handler, pytest's log capture) must still carry facsflow's own INFO progress lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if verbose_requested() or not (record.name == "ray" or record.name.startswith("ray.")):
            return True
        if record.levelno < logging.WARNING:
            return False
        msg = record.getMessage()
        return not any(record.name.startswith(name) and text in msg for name, text in HARMLESS_RAY_WARNINGS)


_CONSOLE_FILTER = _RayConsoleFilter()
_FILE_HANDLERS: dict[str, logging.Handler] = {}


def _ray_loggers() -> list[logging.Logger]:
    """The Ray loggers that own handlers (``ray``, ``ray.data``, ``ray.serve``, ...)."""
    names = ["ray"] + [n for n in list(logging.Logger.manager.loggerDict) if n.startswith("ray.")]
    out = []
    for n in names:
        lg = logging.getLogger(n)
        if n == "ray" or lg.handlers:
            out.append(lg)
    return out


def _route_ray_logs(log_file: "Path | None") -> None:
    """Filter Ray's console handlers and add a file handler beside them (idempotent)."""
    for lg in _ray_loggers():
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
                    and _CONSOLE_FILTER not in h.filters:
                h.addFilter(_CONSOLE_FILTER)
        if log_file is None:
            continue
        fh = _FILE_HANDLERS.get(str(log_file))
        if fh is None:
            fh = logging.FileHandler(log_file)
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            _FILE_HANDLERS[str(log_file)] = fh
        if fh not in lg.handlers:
            lg.addHandler(fh)


def _ray_logs_dir() -> "Path | None":
    """This node's Ray session log folder (None when Ray does not say)."""
    try:
        import ray._private.worker as rw

        return Path(rw._global_node.get_logs_dir_path())
    except Exception:  # noqa: BLE001 - a private API: the path is a convenience, never required
        return None


QUIET_CLIENT_LOGGERS: tuple[str, ...] = ("httpx", "httpcore")
"""HTTP client loggers held at WARNING on the console: httpx logs every request at INFO
("HTTP Request: POST ..."), and the demo's request to its served ensemble is one of our own
progress steps. Their warnings and errors still show; ``--verbose`` shows everything."""


def configure_logging(verbose: bool = False) -> None:
    """Console logging for entrypoints (never called at import): our INFO progress lines, and
    ``QUIET_CLIENT_LOGGERS`` at WARNING unless verbose."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not verbose_requested(verbose):
        for name in QUIET_CLIENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def resolve_address(address: "str | None") -> "str | None":
    """The cluster address to use: the argument, else RAY_ADDRESS, else None (embedded)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def torch_single_thread() -> None:
    """One torch (and OpenCV) thread per actor: actors are the unit of parallelism."""
    import torch

    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


QUIET_SERVE_ENV = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "1.0", "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "2000"}
"""Ray Serve's background loops on the embedded Ray (each only where the environment does not
set it): the controller's control loop every 1 s instead of 0.1 s, and each replica's metrics
export every 2 s instead of 0.1 s. An idle served ensemble (7 deployments) then costs about
0.12-0.14 CPU cores instead of 0.23-0.25 (`python benchmarks/serve_bench.py`, ``idle_cores``),
CPU that every request otherwise pays for on a small machine. Rollouts and autoscaling react
within a second instead of a tenth; Prometheus metrics are 2 s fresh. On a cluster the Serve
controller is the cluster's: set these in its environment there."""


def init_ray(address: "str | None" = None, num_cpus: "int | None" = None,
             runtime_env: "dict[str, Any] | None" = None, verbose: bool = False) -> dict[str, Any]:
    """Start or connect to Ray; return ``ray.cluster_resources()``.

    The embedded instance uses this project's working tree as is; a cluster gets
    ``runtime_env`` (see cluster/runtime_env.yaml). Unless ``verbose`` (or FACSFLOW_VERBOSE),
    worker and actor output stays in Ray's log files (``log_to_driver=False``), and the folder
    is printed once; errors still reach the console through the exceptions Ray raises here.
    """
    import ray
    import ray.data  # noqa: F401 - configures Ray Data's loggers now, so they are routed below

    if ray.is_initialized():
        return ray.cluster_resources()
    verbose = verbose_requested(verbose)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"   # the console filter and later stages read it
    _route_ray_logs(None)
    addr = resolve_address(address)
    # THP_MEM_ALLOC_ENABLE: torch backs CPU tensors of 2 MB and more with huge pages, so a fresh
    # batch tensor costs a few page faults instead of hundreds (the input transform's output:
    # 3x cheaper to fill on this 2-core machine, benchmarks/train_input_stages.py).
    env_vars = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                "THP_MEM_ALLOC_ENABLE": "1"}
    if addr is None:
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
        for key, value in QUIET_SERVE_ENV.items():   # inherited by the raylet and every actor
            os.environ.setdefault(key, value)
        # Actors import components/ and workflows/ from this checkout.
        root = str(Path(__file__).resolve().parents[2])
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        # The dashboard (and the state API behind `ray list tasks`) is off unless asked for:
        # it costs a few hundred MB that a 2-core laptop would rather give to the work.
        dashboard = os.environ.get("FACSFLOW_RAY_DASHBOARD", "") in ("1", "true")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                 logging_level=logging.WARNING, log_to_driver=verbose,
                 runtime_env={"env_vars": env_vars, **(runtime_env or {})})
        _owner_only(Path.home() / ".ray" / "auth_token")
    else:
        # On a cluster the job's runtime env (cluster/runtime_env.yaml) sets the environment; a
        # second env_vars here would conflict with it inside `ray job submit` drivers.
        try:
            ray.init(address=addr, logging_level=logging.WARNING, runtime_env=runtime_env,
                     log_to_driver=verbose)
        except Exception as e:  # noqa: BLE001 - translate Ray's connection errors for the user
            text = str(e)
            if any(k in text.lower() for k in ("authentication token", "unauthenticated", "auth_token",
                                                "missing authentication", "invalid authentication")):
                raise UserError(
                    f"the Ray cluster at {addr} requires an authentication token: set "
                    "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or put the cluster's token in "
                    "~/.ray/auth_token, readable by you only). Ask the cluster's owner for it "
                    "(on the head node: `cat ~/.ray/auth_token`)."
                ) from None
            raise UserError(f"cannot connect to the Ray cluster at {addr}: {text.splitlines()[0]}") from None
    install_stop_handlers()
    logs = _ray_logs_dir()
    log_file = logs / RAY_LOG_FILE if logs is not None and logs.is_dir() else None
    _route_ray_logs(log_file)
    if _CLI["console"] and not verbose:
        filter_native_stderr(log_file)   # the C++ core worker writes below Python's logging
        filter_ray_driver_lines(log_file)   # and the driver prints the error channel with print()
    # Ray Data's bars would interleave with our progress lines; verbose brings them back.
    ray.data.DataContext.get_current().enable_progress_bars = verbose
    resources = ray.cluster_resources()
    where = f"Ray logs: {logs}" if logs is not None else "Ray logs: in the cluster's session folder"
    shown = "shown here too" if verbose else f"--verbose or {VERBOSE_ENV}=1 shows them here"
    log.info("Ray %s with %g CPUs, %g GPUs; %s (%s)", "embedded" if addr is None else f"at {addr}",
             resources.get("CPU", 0), resources.get("GPU", 0), where, shown)
    return resources


def _owner_only(path: Path) -> None:
    """Ray writes its token file with the default umask: make it readable by its owner only."""
    try:
        if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:  # pragma: no cover - best effort on exotic filesystems
        pass


def wait_until_stopped(shutdown: "Callable[[], None]", what: str) -> int:
    """Block until SIGTERM or SIGINT (Ctrl-C), then run ``shutdown`` once and print one line.

    For long-running services (``facsflow serve``): Kubernetes stops a pod with SIGTERM, then
    SIGKILL after its grace period, so the drain runs at once and further signals during it are
    ignored. Returns 0, the exit code of a clean stop.
    """
    install_stop_handlers()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt as e:
        why = e.signal_name if isinstance(e, StopRequested) else "SIGINT"
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    t0 = time.perf_counter()
    shutdown()
    print(f"facsflow: {why} received: {what} stopped cleanly in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


MIN_WORKER_CPUS = 0.25
"""Smallest CPU share ``check_resources`` gives a worker when it shrinks an ask to fit."""


def check_resources(stage: str, resources: dict[str, Any], workers: int, cpus_per_worker: float,
                    gpus_per_worker: float = 0.0, pipeline_cpus: float = 0.0, fit: bool = True,
                    change: str = "") -> float:
    """The CPUs per worker a stage can run with on a cluster of ``resources``; UserError if none.

    The rule: a stage asks for ``workers`` × (``cpus_per_worker`` CPUs, ``gpus_per_worker``
    GPUs) plus ``pipeline_cpus`` for one task of its data pipeline, which must be able to run
    beside the workers (else Ray Data waits forever for a CPU the workers hold). GPUs must be
    there as asked. CPUs that do not fit are shrunk, with ``fit``, to an equal share of what the
    pipeline leaves (rounded down to 0.05, at least ``MIN_WORKER_CPUS``), and the new share is
    logged; otherwise, or below that floor, the stage stops before starting with an error that
    names the ask, the cluster, and ``change`` (the options to turn).
    """
    cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
    hint = f" ({change})" if change else ""
    if workers * gpus_per_worker > gpus + 1e-9:
        raise UserError(f"{stage} asks for {workers} worker(s) x {gpus_per_worker:g} GPU = "
                        f"{workers * gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}: use fewer workers "
                        f"or no GPU{hint}")
    ask = workers * cpus_per_worker + pipeline_cpus
    if ask <= cpus + 1e-9:
        return cpus_per_worker
    share = int((cpus - pipeline_cpus) / max(1, workers) * 20) / 20
    what = (f"{stage} asks for {workers} worker(s) x {cpus_per_worker:g} CPU"
            + (f" + {pipeline_cpus:g} CPU for its data pipeline" if pipeline_cpus else "")
            + f" = {ask:g} CPUs; the Ray cluster has {cpus:g}")
    if not fit or share < MIN_WORKER_CPUS:
        raise UserError(f"{what}: it would wait forever. Ask for less{hint}")
    log.info("%s: giving each worker %g CPU instead so that it fits", what, share)
    return share


@contextmanager
def ray_session(address: "str | None" = None, num_cpus: "int | None" = None,
                verbose: bool = False) -> Iterator[dict[str, Any]]:
    """Ray for the duration of a block; shuts down only what this block started, also when the
    block fails or is stopped (Ctrl-C, SIGTERM)."""
    import ray

    started = not ray.is_initialized()
    try:
        yield init_ray(address, num_cpus, verbose=verbose)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


def run_main(fn, argv: "list[str] | None" = None) -> int:
    """Run an entrypoint: user mistakes print one line to stderr and exit 2, no traceback.

    ``--verbose`` anywhere in ``argv`` is taken out here (stages need not declare it) and shows
    Ray's logs on the console. SIGTERM/SIGINT stop the command like Ctrl-C (exit 130; a stage
    that stops cleanly on them, like serve, returns 0 itself). Ray started by this process is
    shut down on every way out.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    before = os.environ.get(VERBOSE_ENV)
    if "--verbose" in argv:
        argv.remove("--verbose")
        os.environ[VERBOSE_ENV] = "1"
    ray = sys.modules.get("ray")
    ours = ray is None or not ray.is_initialized()   # a caller's Ray (a test fixture) stays up
    previous = install_stop_handlers()
    console_before, _CLI["console"] = _CLI["console"], True
    try:
        return _run(fn, argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        ray = sys.modules.get("ray")
        if ours and ray is not None and ray.is_initialized():
            ray.shutdown()
        _CLI["console"] = console_before
        if not console_before:
            restore_ray_driver_lines()
            restore_native_stderr()
        if before is None:
            os.environ.pop(VERBOSE_ENV, None)
        else:
            os.environ[VERBOSE_ENV] = before


def _run(fn, argv: "list[str]") -> int:
    try:
        return int(fn(argv) or 0)
    except UserError as e:
        print(f"facsflow: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError) as e:
        print(f"facsflow: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        from components.configuration import ConfigError

        if not isinstance(e, ConfigError):
            raise
        print(f"facsflow: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        why = f" ({e.signal_name})" if isinstance(e, StopRequested) else ""
        print(f"facsflow: interrupted{why}", file=sys.stderr)
        return 130
