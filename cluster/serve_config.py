"""Generate the Ray Serve config (and the RayService's copy of it) for a served ensemble.

    python -m cluster.serve_config --ensemble s3://bucket/ensembles/bp4d --out cluster/serve_config.yaml \
        [--rayservice cluster/kuberay/rayservice.yaml]

does what ``serve build`` does for an application *builder* with typed arguments (``serve build``
only accepts an already-bound application): it builds ``workflows.serve:build_app`` with
``{ensemble: ...}``, reads each deployment's options from the code, overlays the cluster's
resources (fractional ``num_cpus``, autoscaling, ``user_config`` where a deployment can take it),
validates the result with Ray's own ``ServeDeploySchema`` and writes it. Building binds arguments
only: no model is loaded and the ensemble need not be readable from this machine. With
``--rayservice`` the ``serveConfigV2`` block of that RayService manifest is replaced by the same
text, so the two can never drift (tests/integration/test_cluster_manifests.py checks it).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python cluster/serve_config.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

__all__ = ["IMPORT_PATH", "ServeResources", "build_serve_config", "render", "embed_in_rayservice", "main"]

IMPORT_PATH = "workflows.serve:build_app"
ROOT = Path(__file__).resolve().parents[1]
RUNTIME_ENV = ROOT / "cluster" / "runtime_env.yaml"
JOB_ONLY_ENV = {"RAY_OVERRIDE_JOB_RUNTIME_ENV"}  # meaningful for job drivers, not for Serve replicas


class ServeResources:
    """Per-replica resources and autoscaling applied to every deployment of the application."""

    def __init__(self, num_cpus: float = 0.5, num_gpus: float = 0.0, min_replicas: int = 1,
                 max_replicas: int = 4, target_ongoing_requests: float = 2.0,
                 max_ongoing_requests: "int | None" = None, user_config: "dict[str, Any] | None" = None):
        if num_cpus <= 0:
            raise ValueError(f"num_cpus must be > 0 (fractions allowed), got {num_cpus}")
        if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas >= 1, got {min_replicas}..{max_replicas}")
        if target_ongoing_requests <= 0:
            raise ValueError(f"target_ongoing_requests must be > 0, got {target_ongoing_requests}")
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.target_ongoing_requests = target_ongoing_requests
        self.max_ongoing_requests = max_ongoing_requests
        self.user_config = user_config or {}


def _env_vars(runtime_env_file: Path) -> dict[str, str]:
    spec = yaml.safe_load(runtime_env_file.read_text()) or {}
    return {str(k): str(v) for k, v in (spec.get("env_vars") or {}).items() if k not in JOB_ONLY_ENV}


def _deployments(ensemble: str) -> list[tuple[dict[str, Any], bool]]:
    """(schema dict as `serve build` writes it, accepts user_config) per deployment of the app."""
    from ray.serve._private.build_app import build_app as build_serve_app
    from ray.serve.deployment import deployment_to_schema

    from workflows.serve import build_app

    built = build_serve_app(build_app({"ensemble": ensemble}), name="facsflow")
    out = []
    for d in built.deployments:
        schema = deployment_to_schema(d).model_dump(exclude_unset=True)
        out.append((schema, callable(getattr(d.func_or_class, "reconfigure", None))))
    return out


def build_serve_config(ensemble: str, resources: ServeResources, *, app_name: str = "facsflow",
                       route_prefix: str = "/", host: str = "0.0.0.0", port: int = 8000,
                       working_dir_uri: "str | None" = None,
                       runtime_env_file: Path = RUNTIME_ENV) -> dict[str, Any]:
    """The Serve deploy config (``serve deploy`` / RayService ``serveConfigV2``) as a dict.

    ``working_dir_uri`` (a remote .zip of this checkout) is only needed on images that do not
    have the project installed; cluster/Dockerfile installs it.
    """
    from ray.serve.schema import ServeDeploySchema

    deployments = []
    for schema, reconfigurable in _deployments(ensemble):
        schema.pop("num_replicas", None)  # autoscaling decides
        if resources.max_ongoing_requests:
            schema["max_ongoing_requests"] = resources.max_ongoing_requests
        actor = dict(schema.get("ray_actor_options") or {})
        actor["num_cpus"] = resources.num_cpus
        if resources.num_gpus:
            actor["num_gpus"] = resources.num_gpus
        schema["ray_actor_options"] = actor
        schema["autoscaling_config"] = {
            "min_replicas": resources.min_replicas,
            "initial_replicas": max(resources.min_replicas, 1),
            "max_replicas": resources.max_replicas,
            # Serve adds replicas when the mean in-flight requests per replica exceed this.
            "target_ongoing_requests": resources.target_ongoing_requests,
            "upscale_delay_s": 10,
            "downscale_delay_s": 300,
        }
        if reconfigurable and resources.user_config:
            schema["user_config"] = dict(resources.user_config)
        deployments.append(schema)
    runtime_env: dict[str, Any] = {"env_vars": _env_vars(runtime_env_file)}
    if working_dir_uri:
        runtime_env["working_dir"] = working_dir_uri
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [{
            "name": app_name,
            "route_prefix": route_prefix,
            "import_path": IMPORT_PATH,
            "args": {"ensemble": ensemble},
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


def main(argv: "list[str] | None" = None) -> int:
    """Command-line entry: build, validate and write the serve config (and RayService block)."""
    p = argparse.ArgumentParser(prog="python -m cluster.serve_config", description=__doc__.split("\n\n")[0])
    p.add_argument("--ensemble", required=True, help="ensemble folder or URI the replicas load (ensemble.json)")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.add_argument("--rayservice", help="also rewrite the serveConfigV2 block of this RayService manifest")
    p.add_argument("--num-cpus", type=float, default=0.5, help="CPUs per replica (fractions allowed)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=4)
    p.add_argument("--target-ongoing-requests", type=float, default=2.0,
                   help="in-flight requests per replica above which Serve scales up")
    p.add_argument("--max-ongoing-requests", type=int, help="cap per replica (default: the code's)")
    p.add_argument("--user-config", default="", help="YAML mapping sent to deployments that have reconfigure()")
    p.add_argument("--host", default="0.0.0.0", help="HTTP bind address of the Serve proxies")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--working-dir-uri", help="remote .zip of this checkout (images without the project)")
    args = p.parse_args(argv)
    try:
        user_config = yaml.safe_load(args.user_config) if args.user_config else {}
        if not isinstance(user_config, dict):
            raise ValueError(f"--user-config must be a YAML mapping, got {args.user_config!r}")
        res = ServeResources(args.num_cpus, args.num_gpus, args.min_replicas, args.max_replicas,
                             args.target_ongoing_requests, args.max_ongoing_requests, user_config)
        config = build_serve_config(args.ensemble, res, host=args.host, port=args.port,
                                    working_dir_uri=args.working_dir_uri)
    except (ValueError, yaml.YAMLError) as e:
        print(f"facsflow: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    shown = ["python -m cluster.serve_config", *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))]
    text = render(config, " ".join(shown))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    if args.rayservice:
        path = Path(args.rayservice)
        path.write_text(embed_in_rayservice(path.read_text(), text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
