"""The import boundary of ARCHITECTURE.md: components/ is a Ray-free library that never imports
ray or workflows, and importing it has no side effects that pull Ray in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("ray", "workflows")


def _imported_roots(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import statement in a file, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def test_components_never_import_ray_or_workflows() -> None:
    files = sorted((ROOT / "components").rglob("*.py"))
    assert len(files) > 20, "the components package was not found"
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod}" for f in files
           for line, mod in _imported_roots(f) if mod in FORBIDDEN]
    assert not bad, "components/ must stay Ray-free:\n" + "\n".join(bad)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The AST walk finds imports inside functions too (a lazy ``import ray`` is still a breach)."""
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from ray import data\n    import workflows.train\n")
    assert [m for _, m in _imported_roots(f) if m in FORBIDDEN] == ["ray", "workflows"]


@pytest.mark.parametrize("module", ["components", "components.au", "components.models.registry",
                                    "components.inference", "components.ensemble"])
def test_importing_components_loads_no_ray(module: str) -> None:
    code = (f"import importlib, sys\nimportlib.import_module({module!r})\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') or m.startswith('workflows')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {module} pulled in {out.stdout.strip()}"
