"""Ray 2.60 token authentication, seen from a client that submits jobs.

A cluster started with ``RAY_AUTH_MODE=token`` (Ray 2.60 also turns it on by itself for a local
cluster started where a token exists) rejects every dashboard and job-server request without
``Authorization: Bearer <token>``. Ray reads the token, in this order: the ``RAY_AUTH_TOKEN``
variable, the file named by ``RAY_AUTH_TOKEN_PATH`` (an unreadable or empty file is an error,
not a fall-through), then ``~/.ray/auth_token``. This module follows the same order so that
what the wrapper sends is what ``ray job submit`` would send, and writes token files readable by
their owner only.

``python -m cluster.auth save [--path P] < token`` stores a token you were given;
``python -m cluster.auth generate --path P`` makes a new random one for a cluster you start;
``python -m cluster.auth where`` says which source would be used (never prints the token).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import stat
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AuthError", "Token", "default_token_path", "find_token", "save_token", "generate_token",
           "cluster_auth_mode", "missing_token_message", "main"]

HOW_TO_GET = ("get it from the cluster's owner (on the head node: `ray get-auth-token`; on KubeRay: "
              "the Secret named in the RayCluster's authOptions) and set RAY_AUTH_TOKEN, or store it with "
              "`python -m cluster.auth save < token.txt` (writes ~/.ray/auth_token, mode 600)")


class AuthError(Exception):
    """A token problem the user can fix; the message is one line that says how."""


@dataclass(frozen=True)
class Token:
    """A token and where it came from (``RAY_AUTH_TOKEN``, or a file path)."""

    value: str
    source: str


def default_token_path() -> Path:
    """``~/.ray/auth_token``: where Ray looks last and where ``ray get-auth-token --generate`` writes."""
    return Path.home() / ".ray" / "auth_token"


def find_token(environ: "dict[str, str] | None" = None) -> "Token | None":
    """The token Ray would use: RAY_AUTH_TOKEN, else RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.

    Returns None when there is none. A RAY_AUTH_TOKEN_PATH that cannot be read or is empty raises
    AuthError, as Ray treats it as a misconfiguration rather than falling back.
    """
    env = os.environ if environ is None else environ
    value = env.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return Token(value, "RAY_AUTH_TOKEN")
    path_text = env.get("RAY_AUTH_TOKEN_PATH", "")
    if path_text:
        path = Path(path_text).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as e:
            raise AuthError(f"RAY_AUTH_TOKEN_PATH={path_text} cannot be read ({e.strerror})") from None
        if not value:
            raise AuthError(f"RAY_AUTH_TOKEN_PATH={path_text} is empty")
        return Token(value, str(path))
    path = default_token_path()
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return Token(value, str(path))
    return None


def save_token(token: str, path: "Path | str | None" = None) -> Path:
    """Write ``token`` to ``path`` (default ~/.ray/auth_token) with mode 600; return the path.

    The file is created owner-only from the first byte (no window in which it is world-readable)
    and an existing file is narrowed to 600 before it is overwritten.
    """
    token = token.strip()
    if not token:
        raise AuthError("refusing to save an empty token")
    target = Path(path).expanduser() if path is not None else default_token_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    return target


def generate_token(path: "Path | str") -> Path:
    """Write a new random 256-bit token (hex) to ``path`` with mode 600, refusing to overwrite one."""
    target = Path(path).expanduser()
    if target.exists():
        raise AuthError(f"{target} already exists: keep it (clusters started with it need it) or remove it first")
    return save_token(secrets.token_hex(32), target)


def cluster_auth_mode(address: str, timeout_s: float = 10.0) -> str:
    """``"token"`` or ``"disabled"``, from the dashboard's public ``/api/authentication_mode``.

    Raises AuthError (one line) when the job server cannot be reached at ``address``.
    """
    url = address.rstrip("/") + "/api/authentication_mode"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return str(json.loads(r.read().decode()).get("authentication_mode", "disabled"))
    except urllib.error.HTTPError as e:
        if e.code == 404:  # a Ray older than token auth: no such endpoint, no auth
            return "disabled"
        raise AuthError(f"the Ray job server at {address} answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise AuthError(
            f"cannot reach the Ray job server at {address} ({reason}): is the head's dashboard up "
            "(`ray start --head --include-dashboard true`) and port 8265 reachable "
            "(e.g. `kubectl port-forward svc/<cluster>-head-svc 8265`)?") from None


def missing_token_message(address: str) -> str:
    """The one-line error for a token cluster when no token is found."""
    return f"the Ray cluster at {address} requires an authentication token and none was found: {HOW_TO_GET}"


def main(argv: "list[str] | None" = None) -> int:
    """``save`` a token read from stdin, or say ``where`` the token would come from."""
    p = argparse.ArgumentParser(prog="python -m cluster.auth", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="store a token read from stdin, readable by you only")
    s.add_argument("--path", help="file to write (default: ~/.ray/auth_token)")
    g = sub.add_parser("generate", help="write a new random token, readable by you only")
    g.add_argument("--path", required=True, help="file to create (e.g. ~/.ray/facsflow-aws-token)")
    sub.add_parser("where", help="print which source Ray would read the token from")
    args = p.parse_args(argv)
    try:
        if args.command == "save":
            print(f"token saved to {save_token(sys.stdin.read(), args.path)} (mode 600)")
            return 0
        if args.command == "generate":
            print(f"new token written to {generate_token(args.path)} (mode 600)")
            return 0
        token = find_token()
    except AuthError as e:
        print(f"facsflow: error: {e}", file=sys.stderr)
        return 2
    print(f"token from {token.source}" if token else "no token found")
    return 0 if token else 1


if __name__ == "__main__":
    raise SystemExit(main())
