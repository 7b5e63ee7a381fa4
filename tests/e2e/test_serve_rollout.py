"""Rolling out a new manifest and rotating the API key through user_config: the same replicas
(reconfigured, not restarted) keep answering throughout, and then answer for the new manifest."""

from __future__ import annotations

import threading
import time


from tests.conftest import require_media


RECONFIGURABLE = ("AUService", "Member0", "Member1")
"""The deployments with ``reconfigure`` (the members only exist in the staged layout; in the
fused one the ingress reconfigures the members it holds)."""


def _eventually(check, timeout_s: float = 300) -> None:
    """``rollout`` returns once Serve reports the app running; replicas reconfigure right after."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the new user_config never took effect"
        time.sleep(0.5)


def _replicas() -> set[str]:
    """Names of the running replica actors of the deployments that reconfigure."""
    import ray

    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    return {n for n in names if n.startswith("SERVE_REPLICA::") and any(f"#{d}#" in n for d in RECONFIGURABLE)}


def test_new_manifest_rolls_out_while_requests_keep_succeeding(client, served) -> None:
    from workflows.serve.app import rollout

    data = (require_media("single_face.jpg") / "single_face.jpg").read_bytes()
    before = _replicas()
    assert before, "no replica of a reconfigurable deployment is running"
    results: list[tuple[int, list[str]]] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            r = client.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"})
            results.append((r.status_code, r.json().get("members_voted", []) if r.status_code == 200 else []))

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        while len(results) < 3:
            time.sleep(0.2)
        rollout(str(served.other_ensemble))
        _eventually(lambda: client.get("/v1/models").json()["ensemble"] == str(served.other_ensemble))
        seen = len(results)
        while len(results) < seen + 3:
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join()
    try:
        assert all(code == 200 for code, _ in results), [c for c, _ in results]
        assert results[0][1] == ["img-mobilenet"] and results[-1][1] == ["img-b"]
        assert _replicas() == before, "replicas were restarted instead of reconfigured"
        models = client.get("/v1/models").json()
        assert [m["name"] for m in models["members"]] == ["img-b", "vid-b"] and models["weights"] == [0.4, 0.6]
        assert client.get("/healthz").json()["members"] == ["img-b", "vid-b"]
    finally:
        rollout(str(served.ensemble))
        _eventually(lambda: client.get("/v1/models").json()["ensemble"] == str(served.ensemble))


def test_api_key_rotates_without_restart(client, served) -> None:
    from workflows.serve.app import rollout

    rollout(str(served.ensemble), api_key="s3cret-key")
    try:
        _eventually(lambda: client.get("/v1/models").status_code == 401)
        assert client.get("/v1/models", headers={"x-api-key": "wrong"}).json()["error"].startswith("missing or wrong")
        assert client.get("/v1/models", headers={"x-api-key": "s3cret-key"}).status_code == 200
        # Video jobs follow the same rule (workflows/serve/jobs.py).
        assert client.get("/v1/jobs").status_code == 401
        assert client.post("/v1/jobs", json={"uri": "/no/such.mp4"}).status_code == 401
        assert client.get("/v1/jobs/0123456789abcdef").status_code == 401
        assert client.get("/v1/jobs", headers={"x-api-key": "s3cret-key"}).status_code == 200
        # The page and the health probe stay open (no data in them).
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
    finally:
        rollout(str(served.ensemble), api_key="")
        _eventually(lambda: client.get("/v1/models").status_code == 200)
