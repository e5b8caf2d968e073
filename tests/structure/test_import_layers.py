"""The layers import in one direction: configuration < model < inference < package face < pipeline < research.

The import graph is read from the source (ast), not by importing, so a lazy import inside a function counts too.
`modeling_xcross/__init__.py` is the package face: it may import every layer below the pipeline (it registers the
inference layer's `recommend`), and the pipeline and research may import it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WALKED = ("configuration_xcross", "modeling_xcross", "research")
LAYERS = ("configuration", "model", "inference", "package face", "pipeline", "research")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    path: Path
    line: int
    target: str  # the imported module of the walked tree


def layer_of(module: str) -> int:
    """The index in LAYERS of a module of the walked tree."""
    parts = module.split(".")
    if parts[0] == "configuration_xcross":
        return LAYERS.index("configuration")
    if parts[0] == "research":
        return LAYERS.index("research")
    if module == "modeling_xcross":
        return LAYERS.index("package face")
    if parts[1] in ("inference", "pipeline"):
        return LAYERS.index(parts[1])
    return LAYERS.index("model")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every Python file under the walked packages of `root`."""
    modules = {}
    for package in WALKED:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """The imports of `module` that reach a module of `known`, each resolved to the most specific known module."""
    is_package = path.name == "__init__.py"
    found = []

    def add(name: str, line: int) -> None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.append(Import(module, path, line, name))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".")
                package = package if is_package else package[:-1]
                base = ".".join(package[:len(package) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module
            for alias in node.names:
                qualified = f"{name}.{alias.name}"
                add(qualified if qualified in known else name, node.lineno)
    return found


def import_graph(root: Path) -> list[Import]:
    modules = module_files(root)
    return [edge for module, path in modules.items() for edge in imports_of(module, path, set(modules))]


def upward_imports(edges: list[Import]) -> list[str]:
    """One line per import from a lower layer into a higher one, naming the file, line and target."""
    return [f"{edge.path}:{edge.line}: {edge.source} ({LAYERS[layer_of(edge.source)]}) imports {edge.target} "
            f"({LAYERS[layer_of(edge.target)]})" for edge in edges if layer_of(edge.target) > layer_of(edge.source)]


def import_cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_tree_imports_in_one_direction_without_cycles():
    edges = import_graph(ROOT)
    assert len(edges) > 50, "the walk found almost no imports: the checker no longer reads the tree"
    assert upward_imports(edges) == []
    assert import_cycles(edges) == []


def write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checker_names_an_upward_import_and_a_cycle(tmp_path):
    for package in ("configuration_xcross", "modeling_xcross", "modeling_xcross/inference", "modeling_xcross/pipeline",
                    "research"):
        write(tmp_path, f"{package}/__init__.py")
    write(tmp_path, "modeling_xcross/pipeline/cli.py")
    write(tmp_path, "modeling_xcross/inference/catalogue.py", "from ..pipeline.cli import main\n")
    write(tmp_path, "modeling_xcross/head.py", "import os\n\n\ndef lazy():\n    from .layer import x\n")
    write(tmp_path, "modeling_xcross/layer.py", "from modeling_xcross import head\n")
    write(tmp_path, "research/report.py", "from modeling_xcross.pipeline import cli\n")
    edges = import_graph(tmp_path)
    assert upward_imports(edges) == [f"{tmp_path / 'modeling_xcross/inference/catalogue.py'}:1: "
                                     "modeling_xcross.inference.catalogue (inference) imports "
                                     "modeling_xcross.pipeline.cli (pipeline)"]
    assert import_cycles(edges) == [["modeling_xcross.head", "modeling_xcross.layer"]]


def test_the_package_face_is_above_inference():
    assert layer_of("modeling_xcross.inference.catalogue") < layer_of("modeling_xcross")
    assert layer_of("modeling_xcross") < layer_of("modeling_xcross.pipeline.cli")
    assert layer_of("modeling_xcross.lora_recommender") < layer_of("modeling_xcross.inference")


def test_research_is_not_part_of_the_installed_package():
    import configparser

    from setuptools import find_packages

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = find_packages(str(ROOT), include=setup["options.packages.find"]["include"].split())
    assert {"modeling_xcross.inference", "modeling_xcross.pipeline", "configuration_xcross"} <= set(packages)
    assert not [package for package in packages if package.split(".")[0] == "research"]
