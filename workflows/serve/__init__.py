"""``facsflow serve``: the Ray Serve application (``app``), its deployments (``deployments``:
face pipeline, members, combiner) and its HTTP ingress (``ingress``); the stage's entry, its
command line and ``main``, is ``__main__`` (``python -m workflows.serve``).

``build_parser`` and ``main`` are read from ``__main__`` when asked for, so importing the
application (``workflows.serve.app``, as ``facsflow demo`` does) does not load the serve stage.
"""

from typing import Any

__all__ = ["build_parser", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from workflows.serve import __main__ as entry

        return getattr(entry, name)
    raise AttributeError(f"module 'workflows.serve' has no attribute {name!r}")
