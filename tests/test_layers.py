"""The layering of core/ that docs/ARCHITECTURE.md draws, checked on the imports themselves: core never
imports Streamlit or the pages, and each subpackage imports only the ones below it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

# subpackage (or top-level module) -> what it may import from core, besides itself, core.errors and core.cancel.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "cancel": set(),
    "io": set(),
    "geometry": set(),
    "models": {"io", "geometry"},
    "projection": {"geometry", "io"},
    "classify": {"geometry"},
    "discover": {"geometry"},
    "explain": {"models", "geometry", "classify", "io"},
    "segment": {"models", "geometry", "io", "explain"},
    "render": {"segment", "geometry"},
    "compare": {"models", "io", "geometry", "classify", "explain", "segment", "projection"},
    "relate": {"models", "io", "render"},
    "concepts": {"models", "io", "geometry", "classify", "render"},
    "cli": {"io", "models", "geometry", "projection", "classify", "explain", "segment", "compare", "render", "discover",
            "relate", "concepts"},
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
        if target in (unit, "errors", "cancel"):
            continue
        assert target in ALLOWED[unit], (f"{path.relative_to(ROOT)} ({unit}) imports {mod}: {unit} may import only "
                                         f"{sorted(ALLOWED[unit])} (docs/ARCHITECTURE.md)")


PAGE_FILES = sorted((ROOT / "pages").rglob("*.py"))


def test_no_page_imports_a_benchmark_module():
    for page in PAGE_FILES:
        mods = _imports(page)
        assert not [m for m in mods if m.startswith(("bench", "core.segment.quality"))], page.relative_to(ROOT)


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_import_only_shared_parts_and_their_own_package(path):
    """pages/shared and pages/components are what pages share: they never import a page; a page package
    (pages/<page>/) imports pages.shared, pages.components and its own modules, never another page."""
    rel = path.relative_to(ROOT / "pages")
    own = rel.parts[0] if len(rel.parts) > 1 else None
    for mod in _imports(path):
        parts = mod.split(".")
        if parts[0] != "pages" or len(parts) < 2:
            continue
        if own in ("shared", "components"):
            assert parts[1] in ("shared", "components"), f"{rel} imports the page module {mod}"
        else:
            assert parts[1] in ("shared", "components", own), f"{rel} imports {mod}: pages share code through pages.shared"
        assert not (len(parts) > 2 and parts[2] == "page"), f"{rel} imports the page script {mod}"


def test_every_routed_page_has_its_fresh_server_entry():
    """Each url of app.py's router has a pages/<n>_<url>.py that runs the router (see its docstring),
    so a link to it on a freshly started server opens the page without Streamlit's 'Page not found'."""
    from pages.shared.routes import ROUTES

    urls = {r.url for r in ROUTES}
    assert all((ROOT / "pages" / u / "page.py").is_file() for u in urls)
    entries = {re.sub(r"^\d+_", "", p.stem): p for p in (ROOT / "pages").glob("*.py") if p.name != "__init__.py"}
    assert urls and urls == set(entries), (urls, set(entries))
    for p in entries.values():
        assert 'runpy.run_path' in p.read_text() and '"app.py"' in p.read_text(), p.name
