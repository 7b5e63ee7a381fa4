"""``python -m workflows.serve``: as ``facsflow serve``."""

from workflows.core.runtime import run_main
from workflows.serve.app import main

raise SystemExit(run_main(main))
