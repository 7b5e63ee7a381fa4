"""``facsflow serve`` and ``python -m workflows.serve``: the serve stage's entry, its command line
and ``main``. The application (``build_app``, ``start``, ``deploy``, ``rollout``) is the library of
``workflows.serve.app``, which other stages (``facsflow demo``) use without this entry.
"""

from __future__ import annotations

import argparse
import os

from ray import serve

from components.configuration import to_dict
from workflows.serve.app import _DEPLOYED, ServeConfig, app_args, app_layout, start

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``ServeConfig`` (``--ensemble``, ``--host``, ``--port``, ``--api-key``,
    ``--member.max-replicas``, ...); ``--args`` is the old name of ``--config``."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(ServeConfig, "facsflow serve", config_aliases=("--args",),
                        description="Serve an ensemble over HTTP with Ray Serve (web page at /, "
                                    "POST /v1/predict, /v1/predict/video, GET /v1/models, /healthz).")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import stage_config
    from workflows.core.runtime import configure_logging, init_ray, wait_until_stopped

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg: ServeConfig = stage_config(args)
    from components.plan import resolve_ensemble

    app = {k: v for k, v in to_dict(cfg).items() if k not in ("ensemble", "host", "port", "api_key")}
    plan = resolve_ensemble(cfg.ensemble)  # no ensemble: the built-in detector
    ensemble = plan.directory
    init_ray(args.address)
    key = cfg.api_key or os.environ.get("FACSFLOW_API_KEY", "")
    url = start(ensemble, cfg.host, cfg.port, key, app=app)
    faces = plan.face_config()
    print(f"serving {ensemble} at {url} ({app_layout(app_args(_DEPLOYED['facsflow']))} layout; faces: "
          f"{faces.detector} + {faces.landmarker} landmarks; web page {url}/, POST {url}/v1/predict); "
          "Ctrl-C to stop", flush=True)
    return wait_until_stopped(serve.shutdown, "Serve drained its requests and")


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
