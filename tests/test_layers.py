"""The layering of core/ that docs/ARCHITECTURE.md draws, checked on the imports themselves: core never
imports Streamlit or the pages, and each subpackage imports only the ones below it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

# subpackage (or top-level module) -> what it may import from core, besides itself and core.errors.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "io": set(),
    "geometry": set(),
    "models": {"io", "geometry"},
    "projection": {"geometry"},
    "classify": {"geometry"},
    "explain": {"models", "geometry", "classify", "io"},
    "segment": {"models", "geometry", "io", "explain"},
    "render": {"segment", "geometry"},
    "compare": {"models", "io", "geometry", "classify", "explain", "segment", "projection"},
    "concepts": {"models", "io", "geometry", "classify", "render"},
    "cli": {"io", "models", "geometry", "projection", "classify", "explain", "segment", "compare", "render", "concepts"},
}
FORBIDDEN_THIRD_PARTY = ("streamlit", "pages", "bench")


def _unit(path: Path) -> str:
    rel = path.relative_to(CORE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            if node.module == "core":
                out += [f"core.{a.name}" for a in node.names]
    return out


FILES = sorted(p for p in CORE.rglob("*.py") if p.name != "__init__.py" or p.parent != CORE)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_follow_the_layers(path):
    unit = _unit(path)
    assert unit in ALLOWED, f"{path.relative_to(ROOT)}: add its unit {unit!r} to ALLOWED and to docs/ARCHITECTURE.md"
    for mod in _imports(path):
        top = mod.split(".")[0]
        assert top not in FORBIDDEN_THIRD_PARTY, f"{path.relative_to(ROOT)} imports {mod}: core/ is UI-free"
        if top != "core" or mod == "core":
            continue
        target = mod.split(".")[1]
        if target in (unit, "errors"):
            continue
        assert target in ALLOWED[unit], (f"{path.relative_to(ROOT)} ({unit}) imports {mod}: {unit} may import only "
                                         f"{sorted(ALLOWED[unit])} (docs/ARCHITECTURE.md)")


def test_no_page_imports_a_benchmark_module():
    for page in sorted((ROOT / "pages").glob("*.py")):
        mods = _imports(page)
        assert not [m for m in mods if m.startswith(("bench", "core.segment.quality"))], page.name
