"""cluster/auth.py and cluster/submit.py without a cluster: token lookup order, file modes,
addresses, entrypoints and runtime envs. The real job server is exercised in tests/e2e."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cluster.auth import AuthError, Token, find_token, generate_token, missing_token_message, save_token
from cluster.submit import ROOT, SubmitError, build_entrypoint, load_runtime_env, main, resolve_address



@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and no token variables, so ~/.ray/auth_token is this test's own."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_token_sources_in_rays_order(home: Path) -> None:
    assert find_token() is None
    default = save_token("from-default\n")
    assert default == home / ".ray" / "auth_token"
    assert find_token() == Token("from-default", str(default))
    other = save_token("from-path", home / "elsewhere" / "tok")
    env = {"RAY_AUTH_TOKEN_PATH": str(other)}
    assert find_token(env).value == "from-path"
    env["RAY_AUTH_TOKEN"] = "  from-env  "
    assert find_token(env) == Token("from-env", "RAY_AUTH_TOKEN")


def test_a_broken_token_path_is_an_error_not_a_fall_through(home: Path) -> None:
    save_token("would-be-fallback")
    with pytest.raises(AuthError, match="RAY_AUTH_TOKEN_PATH=.*cannot be read"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(home / "missing")})
    (home / "empty").write_text("\n")
    with pytest.raises(AuthError, match="is empty"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(home / "empty")})


def test_token_files_are_owner_only_even_when_they_existed(home: Path) -> None:
    loose = home / "loose"
    loose.write_text("old")
    loose.chmod(0o644)
    save_token("new", loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600 and loose.read_text() == "new"
    made = generate_token(home / "gen" / "tok")
    assert stat.S_IMODE(made.stat().st_mode) == 0o600 and len(made.read_text()) == 64
    with pytest.raises(AuthError, match="already exists"):
        generate_token(made)
    with pytest.raises(AuthError, match="empty"):
        save_token("  ")


def test_missing_token_message_is_one_line_that_says_how() -> None:
    msg = missing_token_message("http://h:8265")
    assert "\n" not in msg and "http://h:8265" in msg
    assert "ray get-auth-token" in msg and "RAY_AUTH_TOKEN" in msg and "python -m cluster.auth save" in msg


@pytest.mark.parametrize("arg, env, expected", [
    ("http://a:8265/", {"RAY_ADDRESS": "http://b:8265"}, "http://a:8265"),
    (None, {"RAY_API_SERVER_ADDRESS": "http://c:8265", "RAY_ADDRESS": "http://b:8265"}, "http://c:8265"),
    (None, {"RAY_ADDRESS": "b:8265"}, "http://b:8265"),
    (None, {}, "http://127.0.0.1:8265"),
])
def test_resolve_address(arg, env, expected) -> None:
    assert resolve_address(arg, env) == expected


def test_entrypoints() -> None:
    assert build_entrypoint("preprocess", ["--root", "s3://b/my data"]) == \
        "python -m workflows.preprocess --root 's3://b/my data'"
    assert build_entrypoint("label", ["--teacher", "builtin", "--data", "s3://b/store"]) == \
        "python -m workflows.label --teacher builtin --data s3://b/store"
    assert build_entrypoint(None, [], ["python", "-c", "print('ok')"]) == "python -c 'print('\"'\"'ok'\"'\"')'"
    with pytest.raises(SubmitError, match="unknown stage 'fit'.*preprocess"):
        build_entrypoint("fit", [])


def test_runtime_env_resolves_working_dir_against_the_checkout(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_runtime_env(ROOT / "cluster" / "runtime_env.yaml", env={"AWS_ENDPOINT_URL": "http://s3:9000"})
    assert spec["working_dir"] == str(ROOT)
    assert spec["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert spec["env_vars"]["RAY_OVERRIDE_JOB_RUNTIME_ENV"] == "1"
    assert spec["env_vars"]["AWS_ENDPOINT_URL"] == "http://s3:9000"
    (tmp_path / "sub").mkdir()
    assert load_runtime_env(ROOT / "cluster" / "runtime_env.yaml", "sub")["working_dir"] == str(tmp_path / "sub")
    with pytest.raises(SubmitError, match="is not a folder"):
        load_runtime_env(ROOT / "cluster" / "runtime_env.yaml", "nope")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(SubmitError, match="must hold a mapping"):
        load_runtime_env(tmp_path / "bad.yaml")


def test_usage_mistakes_are_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", "--model", "x"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "facsflow: error: unknown stage 'fit'; choose one of synth, preprocess, label, train, tune, evaluate, ensemble, "
        "serve, predict, demo (or '-- COMMAND')"]
    assert main(["--env", "NOEQUALS", "train"]) == 2
    assert "--env expects KEY=VALUE" in capsys.readouterr().err
    assert main([]) == 2
    assert "name a stage" in capsys.readouterr().err


def test_unreachable_job_server_is_one_line(home: Path, capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--address", f"127.0.0.1:{port}", "--", "true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"facsflow: error: cannot reach the Ray job server at "
                                               f"http://127.0.0.1:{port}")
