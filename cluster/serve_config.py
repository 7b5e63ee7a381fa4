"""Generate the Ray Serve config (and the RayService's copy of it) for a served ensemble.

    python -m cluster.serve_config --ensemble s3://bucket/ensembles/bp4d --out cluster/serve_config.yaml \
        [--rayservice cluster/kuberay/rayservice.yaml]

does what ``serve build`` does for an application *builder* with typed arguments (``serve build``
only accepts an already-bound application): it builds ``workflows.serve.app:build_app`` with
``{ensemble: ...}`` and every deployment scaled by one ``workflows.serve.app.Scaling`` (the type
``facsflow serve`` uses: fractional ``num_cpus``, replicas, autoscaling), reads each deployment's
options from the code, adds ``user_config`` where a deployment can take it,
validates the result with Ray's own ``ServeDeploySchema`` and writes it. Building binds arguments
only: no model is loaded and the ensemble need not be readable from this machine. With
``--rayservice`` the ``serveConfigV2`` block of that RayService manifest is replaced by the same
text, so the two can never drift (tests/integration/test_cluster_manifests.py checks it).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # `python cluster/serve_config.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from workflows.serve.app import REPLICA_ENV, Scaling

__all__ = ["IMPORT_PATH", "Scaling", "ServeBuildConfig", "build_serve_config", "render", "embed_in_rayservice",
           "build_parser", "main"]

IMPORT_PATH = "workflows.serve.app:build_app"
ROOT = Path(__file__).resolve().parents[1]
RUNTIME_ENV = ROOT / "cluster" / "runtime_env.yaml"
JOB_ONLY_ENV = {"RAY_OVERRIDE_JOB_RUNTIME_ENV"}  # meaningful for job drivers, not for Serve replicas


@dataclass
class ServeBuildConfig:
    """What ``python -m cluster.serve_config`` writes (its flags are generated from these fields)."""

    ensemble: str = ""
    """Ensemble folder or URI the replicas load (ensemble.json); required."""
    out: str = ""
    """File to write ('' : stdout)."""
    rayservice: str = ""
    """Also rewrite the serveConfigV2 block of this RayService manifest ('' : none)."""
    scaling: Scaling = field(default_factory=Scaling)
    """Resources and autoscaling of every deployment (workflows.serve.app.Scaling, the one definition
    ``facsflow serve`` uses too)."""
    user_config: dict[str, Any] = field(default_factory=dict)
    """Mapping sent to the deployments that have reconfigure() (e.g. {ensemble: URI} for a rollout)."""
    host: str = "0.0.0.0"
    """HTTP bind address of the Serve proxies."""
    port: int = 8000
    """HTTP port of the Serve proxies."""
    working_dir_uri: str = ""
    """Remote .zip of this checkout (only for images without the project installed)."""
    layout: Literal["auto", "staged", "fused"] = "auto"
    """workflows.serve.app.AppArgs.layout: 'staged', 'fused', or 'auto' (resolved here from
    --num-gpus: fused without GPUs) and written into the config's args, so the deployments it
    lists are the ones the cluster builds."""


def _env_vars(runtime_env_file: Path) -> dict[str, str]:
    spec = yaml.safe_load(runtime_env_file.read_text()) or {}
    return {str(k): str(v) for k, v in (spec.get("env_vars") or {}).items() if k not in JOB_ONLY_ENV}


def resolved_layout(layout: str, scaling: Scaling) -> str:
    """'staged' or 'fused' for the config's args: 'auto' decided from the members' GPUs."""
    from workflows.serve.app import AppArgs, app_layout

    return app_layout(AppArgs(layout=layout), scaling.num_gpus)


def _deployments(ensemble: str, scaling: Scaling, layout: str) -> list[tuple[dict[str, Any], bool]]:
    """(schema dict as `serve build` writes it, accepts user_config) per deployment of the app,
    every deployment scaled by ``scaling`` through the code's own ``Scaling.options``."""
    from ray.serve._private.build_app import build_app as build_serve_app
    from ray.serve.deployment import deployment_to_schema

    from workflows.serve.app import AppArgs, build_app

    fused = layout == "fused"  # one deployment: the stages' scaling would only be warned about
    args = AppArgs(ensemble=ensemble, member_gpus=scaling.num_gpus, ingress=scaling, layout=layout,
                   **({} if fused else {"faces": scaling, "member": scaling, "combiner": scaling}))
    built = build_serve_app(build_app(args), name="facsflow")
    out = []
    for d in built.deployments:
        schema = deployment_to_schema(d).model_dump(exclude_unset=True)
        out.append((schema, callable(getattr(d.func_or_class, "reconfigure", None))))
    return out


def build_serve_config(ensemble: str, scaling: Scaling, *, user_config: "dict[str, Any] | None" = None,
                       app_name: str = "facsflow", route_prefix: str = "/", host: str = "0.0.0.0",
                       port: int = 8000, working_dir_uri: "str | None" = None,
                       runtime_env_file: Path = RUNTIME_ENV, layout: str = "auto") -> dict[str, Any]:
    """The Serve deploy config (``serve deploy`` / RayService ``serveConfigV2``) as a dict.

    ``working_dir_uri`` (a remote .zip of this checkout) is only needed on images that do not
    have the project installed; cluster/Dockerfile installs it.
    """
    from ray.serve.schema import ServeDeploySchema

    layout = resolved_layout(layout, scaling)
    deployments = []
    for schema, reconfigurable in _deployments(ensemble, scaling, layout):
        if reconfigurable and user_config:
            schema["user_config"] = dict(user_config)
        deployments.append(schema)
    runtime_env: dict[str, Any] = {"env_vars": {**_env_vars(runtime_env_file), **REPLICA_ENV}}
    if working_dir_uri:
        runtime_env["working_dir"] = working_dir_uri
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [{
            "name": app_name,
            "route_prefix": route_prefix,
            "import_path": IMPORT_PATH,
            "args": {"ensemble": ensemble, "layout": layout},
            "runtime_env": runtime_env,
            "deployments": deployments,
        }],
    }
    ServeDeploySchema.model_validate(config)
    return config


def render(config: dict[str, Any], command: str) -> str:
    """YAML text with a header naming the command that regenerates it."""
    head = (f"# Generated by `{command}` -- edit the command's options, not this file.\n"
            "# Deploy: serve deploy cluster/serve_config.yaml --address http://<head>:8265 "
            "(RAY_AUTH_MODE=token and the token set; see cluster/README.md)\n")
    return head + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100)


def embed_in_rayservice(manifest_text: str, serve_yaml: str) -> str:
    """Replace the literal ``serveConfigV2: |`` block of a RayService manifest with ``serve_yaml``.

    Only that block changes, so the manifest's comments and layout survive regeneration.
    """
    lines = manifest_text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == "serveConfigV2: |":
            indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines) and (not lines[end].strip()
                                        or len(lines[end]) - len(lines[end].lstrip()) > indent):
                end += 1
            pad = " " * (indent + 2)
            body = [pad + x + "\n" if x.strip() else "\n" for x in serve_yaml.splitlines()]
            return "".join(lines[:i + 1] + body + lines[end:])
    raise ValueError("no `serveConfigV2: |` block found in the RayService manifest")


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``ServeBuildConfig``; the scaling fields keep their short names
    (``--num-cpus``, ``--min-replicas``, ...) as aliases of ``--scaling.*``."""
    from workflows.core.stage_cli import stage_parser

    short = ("num_cpus", "num_gpus", "min_replicas", "max_replicas", "target_ongoing_requests",
             "max_ongoing_requests", "upscale_delay_s", "downscale_delay_s")
    return stage_parser(ServeBuildConfig, "python -m cluster.serve_config", ray=False,
                        description=__doc__.split("\n\n")[0],
                        aliases={f"scaling.{n}": ["--" + n.replace("_", "-")] for n in short})


def main(argv: "list[str] | None" = None) -> int:
    """Command-line entry: build, validate and write the serve config (and RayService block)."""
    from workflows.core.stage_cli import stage_config
    from workflows.core.runtime import UserError

    try:
        cfg: ServeBuildConfig = stage_config(build_parser().parse_args(argv), required=("ensemble",))
        config = build_serve_config(cfg.ensemble, cfg.scaling, user_config=cfg.user_config, host=cfg.host,
                                    port=cfg.port, working_dir_uri=cfg.working_dir_uri or None,
                                    layout=cfg.layout)
    except (ValueError, UserError) as e:
        print(f"facsflow: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    shown = ["python -m cluster.serve_config", *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))]
    text = render(config, " ".join(shown))
    if cfg.out:
        Path(cfg.out).write_text(text)
    else:
        sys.stdout.write(text)
    if cfg.rayservice:
        path = Path(cfg.rayservice)
        path.write_text(embed_in_rayservice(path.read_text(), text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
