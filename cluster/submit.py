"""Submit a facsflow stage to a Ray cluster as a Ray job, follow its logs, return its exit status.

    python -m cluster.submit [options] STAGE [stage arguments ...]
    python -m cluster.submit [options] -- COMMAND [arguments ...]

is ``ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python -m
workflows.STAGE ...`` with the parts that bite done for you: the job server address comes from
``--address``, RAY_API_SERVER_ADDRESS or RAY_ADDRESS (default http://127.0.0.1:8265); the token
from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, in Ray's own order, sent as a bearer
header with RAY_AUTH_MODE=token set for Ray's client code; a token cluster without a token is one
clear line, not a traceback. Without ``--no-wait`` it streams the job's output and exits with the
job's own exit status (1 when the job failed before its driver ran, 2 for a usage mistake).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python cluster/submit.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from cluster.auth import AuthError, cluster_auth_mode, find_token, missing_token_message

__all__ = ["STAGES", "DEFAULT_ADDRESS", "ROOT", "resolve_address", "build_entrypoint", "load_runtime_env",
           "submit", "main"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_RUNTIME_ENV = ROOT / "cluster" / "runtime_env.yaml"
STAGES = ("synth", "preprocess", "label", "train", "tune", "evaluate", "ensemble", "serve", "predict", "demo")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class SubmitError(Exception):
    """A mistake the user can fix; printed as one line."""


def resolve_address(address: "str | None", environ: "dict[str, str] | None" = None) -> str:
    """The job server URL: the argument, else RAY_API_SERVER_ADDRESS, else RAY_ADDRESS, else the default.

    A bare ``host:port`` gets ``http://`` (the job server speaks HTTP on the dashboard port).
    """
    env = os.environ if environ is None else environ
    addr = address or env.get("RAY_API_SERVER_ADDRESS") or env.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    addr = addr.strip().rstrip("/")
    return addr if "://" in addr else f"http://{addr}"


def build_entrypoint(stage: "str | None", args: "list[str]", command: "list[str] | None" = None) -> str:
    """The shell command the job runs: ``python -m workflows.<stage> <args>`` or a raw command."""
    if command is not None:
        if not command:
            raise SubmitError("nothing to run after '--'")
        return shlex.join(command)
    if stage not in STAGES:
        raise SubmitError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)} (or '-- COMMAND')")
    return shlex.join(["python", "-m", f"workflows.{stage}", *args])


def load_runtime_env(path: "str | Path", working_dir: "str | None" = None,
                     env: "dict[str, str] | None" = None) -> dict[str, Any]:
    """Read a runtime-env YAML; resolve a local working_dir; add ``env`` to its env_vars.

    A relative working_dir in the file is relative to the checkout root (so the command works
    from any directory); ``working_dir`` given here is relative to the current directory.
    """
    p = Path(path)
    try:
        spec = yaml.safe_load(p.read_text()) or {}
    except OSError as e:
        raise SubmitError(f"runtime env file {p}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SubmitError(f"runtime env file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise SubmitError(f"runtime env file {p} must hold a mapping, got {type(spec).__name__}")
    wd = working_dir if working_dir is not None else spec.get("working_dir")
    if wd and "://" not in str(wd):
        base = Path.cwd() if working_dir is not None else ROOT
        resolved = (base / str(wd)).resolve()
        if not resolved.is_dir():
            raise SubmitError(f"working_dir {resolved} is not a folder")
        spec["working_dir"] = str(resolved)
    env_vars = {str(k): str(v) for k, v in (spec.get("env_vars") or {}).items()}
    env_vars.update(env or {})
    if env_vars:
        spec["env_vars"] = env_vars
    return spec


def _client(address: str) -> Any:
    """A JobSubmissionClient that authenticates when the cluster asks for a token."""
    mode = cluster_auth_mode(address)
    token = find_token()
    headers: dict[str, str] = {}
    if token is not None:
        # Ray's client code (log tailing, package upload) checks the mode in this process too.
        os.environ["RAY_AUTH_MODE"] = "token"
        headers["Authorization"] = f"Bearer {token.value}"
    elif mode == "token":
        raise AuthError(missing_token_message(address))
    # JobSubmissionClient prefers these variables over its address argument; make them agree.
    os.environ["RAY_API_SERVER_ADDRESS"] = address
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address, headers=headers or None)
    except AuthenticationError:
        where = token.source if token else "nowhere"
        raise AuthError(f"the Ray cluster at {address} rejected the token from {where}: it is not this "
                        "cluster's token (on the head node: `ray get-auth-token`)") from None
    except ConnectionError as e:
        raise SubmitError(f"cannot reach the Ray job server at {address}: {e}") from None


async def _follow(client: Any, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def submit(entrypoint: str, *, address: str, runtime_env: dict[str, Any], wait: bool = True,
           submission_id: "str | None" = None, entrypoint_num_cpus: float = 0.0,
           entrypoint_num_gpus: float = 0.0, metadata: "dict[str, str] | None" = None) -> int:
    """Submit one job; with ``wait``, stream its logs and return its exit status, else 0.

    Raises AuthError / SubmitError (one-line messages) for mistakes the user can fix.
    """
    client = _client(address)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id,
                               entrypoint_num_cpus=entrypoint_num_cpus or None,
                               entrypoint_num_gpus=entrypoint_num_gpus or None, metadata=metadata or {})
    print(f"submitted job {job_id} to {address}: {entrypoint}", file=sys.stderr, flush=True)
    if not wait:
        print(f"follow it with: RAY_AUTH_MODE=token ray job logs -f {job_id} --address {address}",
              file=sys.stderr)
        return 0
    try:
        asyncio.run(_follow(client, job_id))
    except KeyboardInterrupt:
        print(f"stopped following; job {job_id} keeps running (stop it: ray job stop {job_id} "
              f"--address {address})", file=sys.stderr)
        return 130
    info = client.get_job_info(job_id)
    status = str(getattr(info.status, "value", info.status))
    code = info.driver_exit_code
    if code is None:
        code = 0 if status == "SUCCEEDED" else 1
    line = f"job {job_id} {status}" + (f" (exit {code})" if status != "SUCCEEDED" else "")
    if status != "SUCCEEDED" and info.message:
        line += f": {info.message.strip().splitlines()[-1]}"
    print(line, file=sys.stderr)
    return int(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cluster.submit",
        description="Run a facsflow stage on a Ray cluster as a Ray job (uploads this checkout as the "
                    "job's working_dir). Example: python -m cluster.submit preprocess --dataset bp4d "
                    "--root s3://bucket/BP4D --out s3://bucket/stores/bp4d",
        epilog="Token: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (see cluster/README.md).")
    p.add_argument("--address", help=f"job server URL (default: RAY_API_SERVER_ADDRESS, RAY_ADDRESS, "
                                     f"else {DEFAULT_ADDRESS})")
    p.add_argument("--runtime-env", default=str(DEFAULT_RUNTIME_ENV),
                   help="runtime env YAML (default: cluster/runtime_env.yaml)")
    p.add_argument("--working-dir", help="folder to upload instead of the file's working_dir "
                                         "(relative to the current directory)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment variable for the job, e.g. AWS_ENDPOINT_URL=... (repeatable)")
    p.add_argument("--no-wait", action="store_true", help="return after submitting; do not follow logs")
    p.add_argument("--submission-id", help="job id to use (default: generated)")
    p.add_argument("--entrypoint-num-cpus", type=float, default=0.0, help="CPUs reserved for the driver")
    p.add_argument("--entrypoint-num-gpus", type=float, default=0.0, help="GPUs reserved for the driver")
    p.add_argument("stage", nargs="?", help=f"one of: {', '.join(STAGES)}")
    p.add_argument("stage_args", nargs=argparse.REMAINDER, help="arguments for python -m workflows.STAGE")
    return p


def _parse_env(pairs: "list[str]") -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SubmitError(f"--env expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def main(argv: "list[str] | None" = None) -> int:
    """Command-line entry: parse, submit, return the job's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = None
    cut = argv.index("--") if "--" in argv else -1
    if cut >= 0 and not set(argv[:cut]) & set(STAGES):  # '-- COMMAND', as with `ray job submit`
        argv, command = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if command is not None and args.stage:
            raise SubmitError("give either a STAGE or '-- COMMAND', not both")
        if command is None and not args.stage:
            raise SubmitError(f"name a stage ({', '.join(STAGES)}) or a command after '--'")
        entrypoint = build_entrypoint(args.stage, args.stage_args, command)
        runtime_env = load_runtime_env(args.runtime_env, args.working_dir, _parse_env(args.env))
        return submit(entrypoint, address=resolve_address(args.address), runtime_env=runtime_env,
                      wait=not args.no_wait, submission_id=args.submission_id,
                      entrypoint_num_cpus=args.entrypoint_num_cpus,
                      entrypoint_num_gpus=args.entrypoint_num_gpus,
                      metadata={"facsflow_stage": args.stage or "command"})
    except (AuthError, SubmitError) as e:
        print(f"facsflow: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
