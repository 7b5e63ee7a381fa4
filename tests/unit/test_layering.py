"""The import boundaries: components/ is a Ray-free library that never imports ray or workflows,
and importing it has no side effects that pull Ray in; data flows one way, from data sets to the
face pipeline, so the synthetic generator (components/datasets/synth) uses the face geometry of
``components.geometry`` and reaches ``components.faces`` only through its one adapter,
``synth/face_finder.py``.

In workflows/, the stages a user runs (``workflows.cli.STAGE_MODULES``: ``workflows/<stage>.py``,
and serve's entry ``workflows/serve/__main__.py``) import what they share from ``workflows.core``
and never each other; ``workflows.core`` and serve's application modules import no stage."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("ray", "workflows")
SYNTH = ROOT / "components" / "datasets" / "synth"
SYNTH_FACE_ADAPTER = SYNTH / "face_finder.py"
"""The one synth module that may import ``components.faces`` (it finds faces in source photos)."""


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


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import statement in a file, nested ones included; a
    ``from a import b`` counts as ``a`` and ``a.b`` (b may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _stage_files() -> dict[Path, str]:
    """Each stage's entry file(s) → the stage: ``workflows/<stage>.py``; for a package's
    ``__main__`` also the package's ``__init__`` (it hands ``build_parser``/``main`` on)."""
    from workflows.cli import STAGE_MODULES

    out: dict[Path, str] = {}
    for stage, module in STAGE_MODULES.items():
        parts = module.split(".")
        if parts[-1] == "__main__":
            out[ROOT.joinpath(*parts[:-1], "__init__.py")] = stage
        out[ROOT.joinpath(*parts[:-1], f"{parts[-1]}.py")] = stage
    return out


def _stage_of(module: str) -> "str | None":
    """The stage whose entry module ``module`` is (or names a member of); None for any other module."""
    from workflows.cli import STAGE_MODULES

    for stage, entry in STAGE_MODULES.items():
        if module == entry or module.startswith(entry + "."):
            return stage
    return None


def _stage_breaches(path: Path, own: "str | None" = None) -> list[str]:
    """The imports of ``path`` that reach a stage other than ``own`` (None: any stage), or the
    ``facsflow`` dispatcher (which loads every stage)."""
    bad = []
    for line, mod in _imported_modules(path):
        stage = _stage_of(mod)
        if (stage is not None and stage != own) or mod == "workflows.cli" or mod.startswith("workflows.cli."):
            bad.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line} imports {mod}")
    return bad


def _is_face_pipeline(module: str) -> bool:
    return module == "components.faces" or module.startswith("components.faces.")


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


def test_synth_reaches_the_face_pipeline_only_through_its_adapter() -> None:
    files = sorted(SYNTH.rglob("*.py"))
    assert SYNTH_FACE_ADAPTER in files and len(files) > 5, "the synth package was not found"
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod}" for f in files if f != SYNTH_FACE_ADAPTER
           for line, mod in _imported_modules(f) if _is_face_pipeline(mod)]
    assert not bad, ("components/datasets/synth uses components.geometry; only synth/face_finder.py "
                     "may import components.faces:\n" + "\n".join(bad))


def test_geometry_imports_nothing_else_of_components() -> None:
    """``components.geometry`` is shared by the face pipeline and the generator: it depends on neither."""
    mods = [m for _, m in _imported_modules(ROOT / "components" / "geometry.py")]
    assert mods and not [m for m in mods if m == "components" or m.startswith("components.")], mods


def test_the_checker_sees_a_face_pipeline_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("from components.geometry import TEMPLATE_68\n\ndef g():\n    from components import faces\n"
                 "    from components.faces.landmarks import DlibLandmarker\n")
    assert [m for _, m in _imported_modules(f) if _is_face_pipeline(m)] == ["components.faces",
                                                                          "components.faces.landmarks",
                                                                          "components.faces.landmarks.DlibLandmarker"]


def test_importing_the_generator_loads_no_face_pipeline() -> None:
    """The adapter loads the face pipeline when it first finds faces, not when synth is imported."""
    code = ("import sys\nimport components.datasets.synth.generator\n"
            "print(sorted(m for m in sys.modules if m == 'components.faces' or m.startswith('components.faces.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing the generator pulled in {out.stdout.strip()}"


@pytest.mark.parametrize("module", ["components", "components.au", "components.models.registry",
                                    "components.inference", "components.ensemble"])
def test_importing_components_loads_no_ray(module: str) -> None:
    code = (f"import importlib, sys\nimportlib.import_module({module!r})\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') or m.startswith('workflows')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {module} pulled in {out.stdout.strip()}"


def test_every_stage_has_its_entry_module() -> None:
    from workflows.cli import STAGE_MODULES, STAGES

    files = _stage_files()
    assert set(STAGE_MODULES) == set(STAGES) and len(STAGES) > 10
    assert [f for f in files if not f.is_file()] == []


def test_no_stage_imports_another_stage() -> None:
    """A stage composes others' work through ``workflows.core`` (demo: preprocessing, training,
    evaluation, ensembling and serve's application), never through their entry modules."""
    bad = [b for f, stage in sorted(_stage_files().items()) for b in _stage_breaches(f, stage)]
    assert not bad, "stages import workflows.core, not each other (nor workflows.cli):\n" + "\n".join(bad)


def test_core_imports_no_stage() -> None:
    files = sorted((ROOT / "workflows" / "core").rglob("*.py"))
    assert len(files) > 10, "the workflows.core package was not found"
    bad = [b for f in files for b in _stage_breaches(f)]
    assert not bad, "workflows/core is what the stages share: it imports none of them:\n" + "\n".join(bad)


def test_serve_application_imports_no_stage() -> None:
    """``workflows.serve.app`` and its deployments are a library (demo starts the app); only the
    package's entry (``__main__``, and ``__init__`` handing it on) is the serve stage."""
    stage_files = _stage_files()
    files = [f for f in sorted((ROOT / "workflows").rglob("*.py"))
             if f not in stage_files and f != ROOT / "workflows" / "cli.py" and "core" not in f.parts]
    assert ROOT / "workflows" / "serve" / "app.py" in files
    bad = [b for f in files for b in _stage_breaches(f)]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_stage_importing_another(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("from workflows.core.training import read_run\nfrom workflows.serve.app import start\n\n"
                 "def g():\n    from workflows.train import run_training\n    from workflows import label\n"
                 "    import workflows.serve.__main__\n    from workflows.cli import stage_parser\n"
                 "    from workflows.demo import DemoConfig\n")
    assert [b.split(" imports ")[1] for b in _stage_breaches(f, "demo")] == [
        "workflows.train", "workflows.train.run_training", "workflows.label", "workflows.serve.__main__",
        "workflows.cli", "workflows.cli.stage_parser"]
    assert len(_stage_breaches(f)) == 8  # from core, its own stage is a breach too
