"""``facsflow serve``: the Ray Serve application (``app``), its deployments (``deployments``:
face pipeline, members, combiner) and its HTTP ingress (``ingress``)."""

from workflows.serve.app import build_parser, main

__all__ = ["build_parser", "main"]
