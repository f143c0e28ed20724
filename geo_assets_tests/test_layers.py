"""The pure layers import nothing from the Dagster layer (defs/) or the run commands (run/):
what serving computes cannot depend on how Dagster is wired."""

import ast
from pathlib import Path

import geo_assets

PACKAGE = Path(geo_assets.__file__).parent
PURE = ("model", "embed", "preprocess", "geo", "synthetic", "ingest", "mapillary", "attack", "folder", "store", "data",
        "config", "runtime")
UPPER = ("geo_assets.defs", "geo_assets.run", "geo_assets.definitions", "geo_assets.cli")


def _imported_names(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            # `from geo_assets import defs` names the module through its alias
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return out


def upward_imports(package: Path = PACKAGE, folders=PURE) -> list[str]:
    bad = []
    for folder in folders:
        for path in sorted((package / folder).rglob("*.py")):
            for line, name in _imported_names(path):
                if any(name == u or name.startswith(u + ".") for u in UPPER):
                    bad.append(f"{path.relative_to(package).as_posix()}:{line} imports {name}")
    return sorted(set(bad))


def test_pure_layers_import_nothing_from_defs_or_run():
    assert upward_imports() == []


def test_the_check_finds_an_upward_import_inside_a_function(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x.py").write_text(
        "from geo_assets.runtime.threads import model_threads\n"
        "def f():\n    from geo_assets.defs.resources import synthetic_world\n"
        "    from geo_assets import run\n")
    assert upward_imports(tmp_path, ("model",)) == [
        "model/x.py:3 imports geo_assets.defs.resources",
        "model/x.py:3 imports geo_assets.defs.resources.synthetic_world",
        "model/x.py:4 imports geo_assets.run",
    ]
