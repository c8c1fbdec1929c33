"""The package layers: no package imports one above it (imports inside functions included).

cli > workflows > evaluation > training, simulation > data, models > errors, cpu. Orchestration (the
quickstart, studies) lives in ``workflows``; training must not reach up into evaluation to run it.
"""

import ast
from pathlib import Path

import equilens

RANK = {"errors": 0, "cpu": 0, "data": 1, "models": 1, "simulation": 2, "training": 2, "evaluation": 3,
        "workflows": 4, "cli": 5, "__main__": 6}
ROOT = Path(equilens.__file__).parent


def _imports(path: Path) -> set[str]:
    """Top-level equilens packages imported anywhere in ``path`` (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        found |= {n.split(".")[1] for n in names if n.startswith("equilens.")}
    return found


def test_every_package_has_a_rank():
    packages = {p.name.removesuffix(".py") for p in ROOT.iterdir()
                if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert packages <= set(RANK), packages - set(RANK)


def test_no_package_imports_upward():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        package = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if package == "__init__":
            continue
        for target in _imports(path) - {package}:
            if RANK[target] > RANK[package]:
                upward.append(f"{path.relative_to(ROOT)} ({package}) imports equilens.{target}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_hidden_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from equilens.evaluation.report import build_report\n")
    assert _imports(module) == {"evaluation"}
