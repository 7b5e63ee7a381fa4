"""Ray bootstrap shared by every workflow.

No address (and no RAY_ADDRESS) starts an embedded local Ray instance with
``ray.init(address="local")``: a plain ``ray.init()`` would attach to any cluster that
``ray start`` left running on the machine. ``--address`` / RAY_ADDRESS connects to a cluster;
Ray 2.60 clusters run with token authentication, and a missing token is reported with what to do.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("facsflow")

__all__ = ["UserError", "init_ray", "ray_session", "resolve_address", "configure_logging",
           "run_main", "torch_single_thread"]


class UserError(Exception):
    """A mistake the user can fix (missing folder, bad option): printed as one line, no traceback."""


def configure_logging(verbose: bool = False) -> None:
    """Console logging for entrypoints (never called at import)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


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


def init_ray(address: "str | None" = None, num_cpus: "int | None" = None,
             runtime_env: "dict[str, Any] | None" = None) -> dict[str, Any]:
    """Start or connect to Ray; return ``ray.cluster_resources()``.

    The embedded instance keeps Ray's own log noise down and uses this project's working tree
    as is; a cluster gets ``runtime_env`` (see cluster/runtime_env.yaml).
    """
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    addr = resolve_address(address)
    env_vars = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if addr is None:
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
        # Actors import components/ and workflows/ from this checkout.
        root = str(Path(__file__).resolve().parents[1])
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        # The dashboard (and the state API behind `ray list tasks`) is off unless asked for:
        # it costs a few hundred MB that a 2-core laptop would rather give to the work.
        dashboard = os.environ.get("FACSFLOW_RAY_DASHBOARD", "") in ("1", "true")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                 logging_level=logging.WARNING, log_to_driver=True,
                 runtime_env={"env_vars": env_vars, **(runtime_env or {})})
        _owner_only(Path.home() / ".ray" / "auth_token")
    else:
        # On a cluster the job's runtime env (cluster/runtime_env.yaml) sets the environment; a
        # second env_vars here would conflict with it inside `ray job submit` drivers.
        try:
            ray.init(address=addr, logging_level=logging.WARNING, runtime_env=runtime_env)
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
    return ray.cluster_resources()


def _owner_only(path: Path) -> None:
    """Ray writes its token file with the default umask: make it readable by its owner only."""
    try:
        if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:  # pragma: no cover - best effort on exotic filesystems
        pass


@contextmanager
def ray_session(address: "str | None" = None, num_cpus: "int | None" = None) -> Iterator[dict[str, Any]]:
    """Ray for the duration of a block; shuts down only what this block started."""
    import ray

    started = not ray.is_initialized()
    resources = init_ray(address, num_cpus)
    try:
        yield resources
    finally:
        if started:
            ray.shutdown()


def run_main(fn, argv: "list[str] | None" = None) -> int:
    """Run an entrypoint: user mistakes print one line to stderr and exit 2, no traceback."""
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
    except KeyboardInterrupt:
        print("facsflow: interrupted", file=sys.stderr)
        return 130
