"""Import-layer checker for the ``pointserve`` package: which module imports which, and whether that follows the layers.

    python scripts/import_graph.py [PACKAGE_DIR] [--check]

The package is read with :mod:`ast` only; nothing in it is imported or run. Every import statement counts wherever
it sits (module level, inside a function or class, under ``if TYPE_CHECKING:``, in ``try``/``except``), and so does
``importlib.import_module("pkg.x.y")`` with a literal name.

Layers: ``LAYERS`` is an ordered list of ranks, each a set of top-level names (the first component after the package
name: a subpackage or a module; the package's own ``__init__`` is the package name itself). A module may import
modules of its own top-level name freely and any module of a strictly lower rank. Anything else (a higher rank, or a
different name of the same rank) is a violation, and a top-level name missing from the table is an error of its own,
so that a new subpackage has to be placed deliberately.

The functions take the table and the package name as parameters so the checks can run on any package. Standard
library only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "pointserve"

LAYERS: list[set[str]] = [
    {"errors"},
    {"pointserve"},  # the package's __init__: its version and the base error
    {"card", "arguments", "files", "render"},
    {"data", "geometry", "metrics"},
    {"models"},
    {"checkpoint"},
    {"training", "repository"},
    {"calibration"},
    {"export"},
    {"engines"},
    {"bench"},
    {"service"},
    {"deploy"},
    {"cli"},
    {"quickstart", "__main__"},  # both drive the CLI
]

DEFAULT_PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

Edges = Mapping[str, Set[str]]


@dataclass(frozen=True, order=True)
class Violation:
    """An import against the layer order: ``importer`` imports ``imported``; ``why`` says which rule it breaks."""

    importer: str
    imported: str
    why: str


@dataclass
class ModuleScan:
    """What one module's source says about its imports within the package."""

    # imported module -> line numbers of the statements (or calls) importing it
    sites: dict[str, list[int]] = field(default_factory=dict)
    # line numbers of ``import_module(...)`` calls whose argument is not a literal string
    dynamic: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------------
# Collecting the import graph


def module_name(path: Path, package_dir: Path) -> str:
    """The dotted name of the module in ``path``; a package's ``__init__.py`` is named after its package."""
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files(package_dir: Path) -> list[Path]:
    """Every ``.py`` file under ``package_dir``, skipping ``__pycache__`` and hidden folders."""
    files = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).parts
        if any(part == "__pycache__" or part.startswith(".") for part in relative[:-1]):
            continue
        files.append(path)
    return files


def _known_modules(package_dir: Path, files: Iterable[Path]) -> set[str]:
    """Dotted names of all modules: each file, and each folder holding one (a package, with or without __init__)."""
    known = set()
    for path in files:
        name = module_name(path, package_dir)
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            known.add(".".join(parts[:end]))
    return known


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str | None:
    """The absolute name of ``from <level dots><module> import ...`` written in ``importer``; None if out of range."""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    # level 1 is the importer's own package; each further dot goes one package up
    if level - 1 >= len(base):
        return None
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _literal_str(node: ast.expr | None) -> str | None:
    """The value of a string literal node, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_import_module_call(node: ast.Call) -> bool:
    """``importlib.import_module(...)`` or a bare ``import_module(...)`` (after ``from importlib import ...``)."""
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module" and isinstance(func.value, ast.Name) and func.value.id == "importlib"
    return isinstance(func, ast.Name) and func.id == "import_module"


def scan_module(tree: ast.AST, importer: str, is_package: bool, known: Set[str], package: str) -> ModuleScan:
    """Imports of modules of ``package`` anywhere in ``tree`` (the parsed source of module ``importer``)."""
    scan = ModuleScan()

    def within(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    def add(name: str | None, line: int) -> None:
        if name is not None and within(name):
            scan.sites.setdefault(name, []).append(line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(importer, is_package, node.level, node.module)
            else:
                base = node.module
            if base is None:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # ``from a.b import c`` imports the module a.b.c when there is one, else the name c from a.b
                add(submodule if alias.name != "*" and submodule in known else base, node.lineno)
        elif isinstance(node, ast.Call) and _is_import_module_call(node):
            name = _literal_str(node.args[0]) if node.args else None
            if name is None:
                scan.dynamic.append(node.lineno)
                continue
            if name.startswith("."):
                anchor = _literal_str(node.args[1]) if len(node.args) > 1 else None
                for keyword in node.keywords:
                    if keyword.arg == "package":
                        anchor = _literal_str(keyword.value)
                if anchor is None:
                    scan.dynamic.append(node.lineno)
                    continue
                level = len(name) - len(name.lstrip("."))
                name = _resolve_relative(anchor, True, level, name[level:] or None)
            add(name, node.lineno)
    return scan


def scan_package(package_dir: Path) -> dict[str, ModuleScan]:
    """Module name -> :class:`ModuleScan` for every ``.py`` file under ``package_dir`` (read with ast, never run)."""
    package_dir = Path(package_dir)
    package = package_dir.name
    files = _source_files(package_dir)
    known = _known_modules(package_dir, files)
    scans = {}
    for path in files:
        importer = module_name(path, package_dir)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        scans[importer] = scan_module(tree, importer, path.name == "__init__.py", known, package)
    return scans


def collect_imports(package_dir: Path) -> dict[str, set[str]]:
    """Module name -> dotted names of the modules of the same package it imports, for every module under the dir.

    The package name is the folder's name. Every module is a key, also those importing nothing.
    """
    return {module: set(scan.sites) for module, scan in scan_package(package_dir).items()}


# --------------------------------------------------------------------------------------------------------------------
# Layers


def top_level(module: str, package: str = PACKAGE) -> str:
    """The first name after the package (``pkg.service.app`` -> ``service``); the package itself for its __init__."""
    parts = module.split(".")
    if parts[0] != package:
        raise ValueError(f"{module!r} is not a module of package {package!r}")
    return parts[1] if len(parts) > 1 else package


def layer_ranks(layers: Sequence[Set[str]]) -> dict[str, int]:
    """Top-level name -> rank; a name listed in two ranks is an error in the table."""
    ranks: dict[str, int] = {}
    for rank, names in enumerate(layers):
        for name in names:
            if name in ranks:
                raise ValueError(f"layer table lists {name!r} twice (ranks {ranks[name]} and {rank})")
            ranks[name] = rank
    return ranks


def _modules_of(edges: Edges) -> set[str]:
    """Every module named in the graph, importer or imported."""
    modules = set(edges)
    for imported in edges.values():
        modules.update(imported)
    return modules


def unranked_names(edges: Edges, layers: Sequence[Set[str]] = LAYERS, package: str = PACKAGE) -> list[str]:
    """Top-level names of modules in the graph (importers and imported) that the layer table does not place."""
    ranks = layer_ranks(layers)
    return sorted({name for name in map(lambda m: top_level(m, package), _modules_of(edges)) if name not in ranks})


def violations(edges: Edges, layers: Sequence[Set[str]] = LAYERS, package: str = PACKAGE) -> list[Violation]:
    """Imports against the layer order, sorted; edges touching an unranked name are left to :func:`unranked_names`."""
    ranks = layer_ranks(layers)
    found = []
    for importer, imported_modules in edges.items():
        source = top_level(importer, package)
        for imported in imported_modules:
            target = top_level(imported, package)
            if source == target or source not in ranks or target not in ranks:
                continue
            if ranks[target] > ranks[source]:
                why = f"{source} (rank {ranks[source]}) imports {target} (rank {ranks[target]}): a higher rank"
            elif ranks[target] == ranks[source]:
                why = f"{source} imports {target}: both rank {ranks[source]}"
            else:
                continue
            found.append(Violation(importer, imported, why))
    return sorted(found)


# --------------------------------------------------------------------------------------------------------------------
# Cycles


def module_cycles(edges: Edges) -> list[list[str]]:
    """Import cycles: each strongly connected component of more than one module, and each module importing itself.

    Every edge counts (module level and function level alike). Each cycle is a sorted list of its modules; the list
    is sorted too. Iterative Tarjan, so deep graphs do not hit the recursion limit.
    """
    graph = {node: sorted(edges.get(node, ())) for node in sorted(_modules_of(edges))}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph[successor])))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    components.append(sorted(component))
    return sorted(components)


def cycle_path(edges: Edges, cycle: Sequence[str]) -> list[str]:
    """One shortest closed path through the first module of ``cycle`` inside it: ``[a, b, a]`` (``[a, a]`` for self)."""
    members = set(cycle)
    start = cycle[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(edges.get(node, ())):
                if successor not in members:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise ValueError(f"{list(cycle)} is not a cycle of the graph")


# --------------------------------------------------------------------------------------------------------------------
# Report


def cross_package_counts(edges: Edges, package: str = PACKAGE) -> Counter[tuple[str, str]]:
    """(importer top-level, imported top-level) -> number of module edges between them, different names only."""
    counts: Counter[tuple[str, str]] = Counter()
    for importer, imported_modules in edges.items():
        source = top_level(importer, package)
        for imported in imported_modules:
            target = top_level(imported, package)
            if source != target:
                counts[source, target] += 1
    return counts


def _lines(scans: Mapping[str, ModuleScan], importer: str, imported: str) -> str:
    scan = scans.get(importer)
    lines = sorted(set(scan.sites.get(imported, ()))) if scan else []
    return f"line {', '.join(map(str, lines))}" if lines else ""


def report(
    package_dir: Path, layers: Sequence[Set[str]] = LAYERS, out=None
) -> tuple[list[Violation], list[str], list[list[str]]]:
    """Print the report for the package in ``package_dir``; return (violations, unranked names, cycles)."""
    out = out or sys.stdout
    package_dir = Path(package_dir)
    package = package_dir.name
    scans = scan_package(package_dir)
    edges = {module: set(scan.sites) for module, scan in scans.items()}
    ranks = layer_ranks(layers)
    found = violations(edges, layers, package)
    unranked = unranked_names(edges, layers, package)
    cycles = module_cycles(edges)
    against = {(top_level(v.importer, package), top_level(v.imported, package)) for v in found}

    def say(text: str = "") -> None:
        print(text, file=out)

    say(f"package {package}: {package_dir}")
    say(f"modules: {len(edges)}")
    say(f"import edges (module -> module, within the package): {sum(len(v) for v in edges.values())}")
    say()
    counts = cross_package_counts(edges, package)
    say(f"cross-package edges ({len(counts)} pairs; ! = against the order, ? = unranked):")
    if counts:
        width = max(len(name) for pair in counts for name in pair)
        say(f"  {'importer':<{width}}  {'imported':<{width}}  edges")
        for (source, target), count in sorted(counts.items(), key=lambda item: (ranks.get(item[0][0], -1), item[0])):
            mark = "!" if (source, target) in against else "?" if source not in ranks or target not in ranks else ""
            say(f"  {source:<{width}}  {target:<{width}}  {count:>5} {mark}".rstrip())
    say()
    say(f"imports against the order: {len(found)}")
    for violation in found:
        where = _lines(scans, violation.importer, violation.imported)
        say(f"  {violation.importer} -> {violation.imported}  ({where}; {violation.why})")
    say(f"unranked top-level names: {len(unranked)}")
    for name in unranked:
        modules = sorted(m for m in _modules_of(edges) if top_level(m, package) == name)
        say(f"  {name}: {', '.join(modules)}")
    say(f"cycles: {len(cycles)}")
    for cycle in cycles:
        path = cycle_path(edges, cycle)
        steps = " -> ".join(path)
        say(f"  {steps}" + (f"  (component of {len(cycle)}: {', '.join(cycle)})" if len(cycle) > len(path) - 1 else ""))
    dynamic = sorted((module, line) for module, scan in scans.items() for line in scan.dynamic)
    if dynamic:
        say(f"import_module calls with a computed name (not in the graph): {len(dynamic)}")
        for module, line in dynamic:
            say(f"  {module} line {line}")
    return found, unranked, cycles


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the report; with ``--check`` exit 1 on any violation, unranked name or cycle."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "package_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_PACKAGE_DIR,
        help=f"the package folder (default: {DEFAULT_PACKAGE_DIR})",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 on any violation, unranked name or cycle")
    args = parser.parse_args(argv)
    if not args.package_dir.is_dir():
        parser.error(f"not a folder: {args.package_dir}")
    try:
        found, unranked, cycles = report(args.package_dir)
    except SyntaxError as exc:
        print(f"error: cannot parse {exc.filename}:{exc.lineno}: {exc.msg}", file=sys.stderr)
        return 2
    if args.check and (found or unranked or cycles):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
