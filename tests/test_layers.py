"""The packages import one way: each may use those below it, never one above or beside it in a cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "reslab"
LAYERS = [  # bottom first; a module may import its own layer's package and lower layers only
    {"hardware", "precision", "timing", "collectives", "atomic", "version", "paths", "names", "options", "results"},
    {"data"},
    {"config"},
    {"modelfile"},
    {"models"},
    {"formats"},
    {"infer"},
    {"features"},
    {"evaluate"},
    {"train", "export"},
    {"optimize", "curate", "pretrain", "scale"},
    {"serve", "bench", "env"},
    {"cli"},
    {"demo", "__main__", "__init__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def top_level(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_packages(path: Path) -> set[str]:
    """reslab's top-level packages that ``path`` imports, inside functions too."""
    package = list(path.relative_to(PACKAGE).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            parts = base + (node.module.split(".") if node.module else [])
            names = [parts[0]] if parts else [alias.name for alias in node.names]
            found.update(n if n in LAYER else "__init__" for n in names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found.update(m.split(".")[1] for m in modules if m.startswith("reslab."))
    return found


def test_every_module_is_placed_in_a_layer():
    assert {top_level(p) for p in PACKAGE.rglob("*.py")} <= set(LAYER)


def test_no_import_goes_up_or_sideways():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = top_level(path)
        for target in imported_packages(path) - {own}:
            if LAYER[target] >= LAYER[own]:
                wrong.append(f"{path.relative_to(PACKAGE)} ({own}, layer {LAYER[own]}) imports {target} "
                             f"(layer {LAYER[target]})")
    assert not wrong, "\n".join(wrong)


def is_internal(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] == "reslab"
    return any(a.name.split(".")[0] == "reslab" for a in node.names)


def unexplained_inner_imports(path: Path) -> list[int]:
    """Lines of reslab imports inside functions with no comment in their group saying why (torch kept off a
    light path, an optional library, a cycle)."""
    lines = path.read_text().splitlines()
    found = []
    for func in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if (isinstance(node, (ast.Import, ast.ImportFrom)) and is_internal(node)
                    and not any("#" in line for line in import_group(lines, node))):
                found.append(node.lineno)
    return sorted(set(found))


def import_group(lines: list[str], node: ast.Import | ast.ImportFrom) -> list[str]:
    """The import's own lines and the run of imports and comments just above it: one comment may say why
    for a group of imports."""
    first = node.lineno - 1
    while first > 0 and lines[first - 1].strip().startswith(("from ", "import ", "#")):
        first -= 1
    return lines[first : node.end_lineno]


def test_inner_internal_imports_say_why():
    wrong = [f"{path.relative_to(PACKAGE)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             for line in unexplained_inner_imports(path)]
    assert not wrong, "reslab imports inside functions without a comment saying why:\n" + "\n".join(wrong)
