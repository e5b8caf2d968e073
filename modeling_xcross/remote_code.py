"""The self-contained `configuration_xcross.py` and `modeling_xcross.py` a Hub repo needs for `trust_remote_code`.

transformers loads remote code as flat files next to `config.json`, resolving only `from .module import` lines
between them. The package spans several modules, so the modeling file is generated from the installed sources:
every module `modeling_xcross.modeling_xcross` needs, then every module the inference layer needs (its package init
registers the ranking behind `model.recommend`, so a model loaded from the flat files recommends too), in
dependency order, with the imports between them removed. Anything the flattening cannot keep correct (an aliased or
star import from the package, a top-level name defined in two modules) fails here, at publish time, rather than on
the user's machine.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

CONFIG_PACKAGE = "configuration_xcross"
MODEL_PACKAGE = "modeling_xcross"
# Flattened in this order, each after the modules it imports: the model classes, then the inference layer (dotted
# names are relative to the model package; a package stands for its `__init__.py`).
ENTRY_MODULES = ("modeling_xcross", "inference")
CONFIG_CLASS = "XCrossConfig"
MODEL_CLASS = "XCrossForSequentialRecommendation"
AUTO_MAP = {
    "AutoConfig": f"{CONFIG_PACKAGE}.{CONFIG_CLASS}",
    "AutoModel": f"{MODEL_PACKAGE}.{MODEL_CLASS}",
}
_FUTURE = "from __future__ import annotations"
# Names several modules may define by the same statement: each module's `logger = logging.get_logger(...)` names one
# logger in the flat file, so repeating it changes nothing. Any other name defined twice is refused.
REPEATABLE_NAMES = ("logger",)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"Writing remote code needs the `{package}` package installed (pip install xcross-rec); a model "
                           "loaded with trust_remote_code cannot regenerate its own code files.")
    return Path(next(iter(spec.submodule_search_locations)))


def _module_path(package_dir: Path, module: str) -> Path:
    """The file of a dotted module name of the model package: `a.b` is `a/b.py`, or `a/b/__init__.py` for a package."""
    path = package_dir.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _package_import(node: ast.stmt, importer: str, is_package: bool) -> tuple[str, str] | None:
    """(package, module) when `node`, in module `importer` of the model package (a package init when `is_package`),
    imports from this project (`.x`, `..x`, `configuration_xcross`, ...), else None; `module` is dotted from the root
    of `package`, None for the package itself."""
    if isinstance(node, ast.Import) and any(alias.name.split(".")[0] in (CONFIG_PACKAGE, MODEL_PACKAGE)
                                            for alias in node.names):
        raise ValueError(f"line {node.lineno}: use `from ... import name` for project imports, not `import`.")
    if not isinstance(node, ast.ImportFrom):
        return None
    if node.level > 0:
        parent = importer.split(".")[:None if is_package else -1]
        if node.level - 1 > len(parent):
            raise ValueError(f"line {node.lineno}: the relative import reaches above the `{MODEL_PACKAGE}` package.")
        parts = parent[:len(parent) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        package, module = MODEL_PACKAGE, ".".join(parts) or None
    elif node.module and node.module.split(".")[0] in (CONFIG_PACKAGE, MODEL_PACKAGE):
        package, module = node.module.split(".")[0], ".".join(node.module.split(".")[1:]) or None
    else:
        return None
    if any(alias.asname or alias.name == "*" for alias in node.names):
        raise ValueError(f"line {node.lineno}: aliased or star imports from the project cannot be flattened.")
    return package, module


def _nested_project_import(tree: ast.Module) -> ast.stmt | None:
    """A project import below the top level (in a function, a class, a try): the flattening removes only top-level
    ones, and transformers would fetch a relative one left in the flat file as a file of the repo."""
    for statement in tree.body:
        for node in ast.walk(statement):
            if node is not statement and isinstance(node, ast.ImportFrom) and (
                    node.level > 0 or (node.module or "").split(".")[0] in (CONFIG_PACKAGE, MODEL_PACKAGE)):
                return node
    return None


def _split(path: Path, module: str | None = None) -> tuple[list[str], list[str], list[str]]:
    """(modules of this package it imports, names it imports from configuration_xcross, remaining source lines) of
    the file of `module` (dotted, relative to the model package; by default the file's own name)."""
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    module = module or path.stem
    nested = _nested_project_import(tree)
    if nested is not None:
        raise ValueError(f"{path}:{nested.lineno}: project imports must be at the top level of a module to be "
                         "flattened; move it there.")
    dependencies, config_names, drop = [], [], set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            drop.update(range(node.lineno - 1, node.end_lineno))
            continue
        try:
            target = _package_import(node, module, path.name == "__init__.py")
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        if target is None:
            continue
        package, imported = target
        if package == CONFIG_PACKAGE:
            config_names += [alias.name for alias in node.names]
        elif imported is None:
            raise ValueError(f"{path}:{node.lineno}: import from the `{MODEL_PACKAGE}` package itself, not a module.")
        else:
            dependencies.append(imported)
        drop.update(range(node.lineno - 1, node.end_lineno))
    return dependencies, config_names, [line for index, line in enumerate(lines) if index not in drop]


def _top_level_definitions(source: str) -> dict[str, str]:
    """`{name: source of the statement defining it}` of the top-level functions, classes and assignments."""
    definitions = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions[node.name] = ast.unparse(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            definitions |= {target.id: ast.unparse(node) for target in targets if isinstance(target, ast.Name)}
    definitions.pop("__all__", None)
    return definitions


def flat_modeling_source() -> str:
    """The modules of `ENTRY_MODULES` and all they import, concatenated in dependency order into one file."""
    package_dir = _package_dir(MODEL_PACKAGE)
    ordered: list[str] = []
    parts: dict[str, list[str]] = {}
    files: dict[str, str] = {}  # module -> its file, as the messages and section headers name it
    config_names: set[str] = set()

    def visit(module: str, chain: tuple[str, ...]) -> None:
        if module in chain:
            raise ValueError(f"Import cycle between modules: {' -> '.join(chain + (module,))}.")
        if module in parts:
            return
        path = _module_path(package_dir, module)
        files[module] = f"{MODEL_PACKAGE}/{path.relative_to(package_dir).as_posix()}"
        dependencies, names, lines = _split(path, module)
        config_names.update(names)
        parts[module] = lines
        for dependency in dependencies:
            visit(dependency, chain + (module,))
        ordered.append(module)

    for entry in ENTRY_MODULES:
        visit(entry, ())
    defined: dict[str, tuple[str, str]] = {}  # name -> (module, statement) of its first definition
    for module in ordered:
        for name, statement in _top_level_definitions("\n".join(parts[module])).items():
            first_module, first_statement = defined.setdefault(name, (module, statement))
            if first_module != module and not (name in REPEATABLE_NAMES and first_statement == statement):
                raise ValueError(f"`{name}` is defined at top level in both {files[first_module]} and "
                                 f"{files[module]}; rename one so the modules can be flattened into a single file.")
    header = [f'"""X-Cross remote code, generated from the `{MODEL_PACKAGE}` package; do not edit."""', "", _FUTURE, ""]
    if config_names:
        header.append(f"from .{CONFIG_PACKAGE} import {', '.join(sorted(config_names))}")
    body = [f"\n# ---- {files[module]}\n" + "\n".join(parts[module]).strip() + "\n" for module in ordered]
    return "\n".join(header) + "\n" + "\n".join(body)


def flat_configuration_source() -> str:
    """The configuration module, which is self-contained already."""
    _, config_names, lines = _split(_package_dir(CONFIG_PACKAGE) / f"{CONFIG_PACKAGE}.py")
    if config_names:
        raise ValueError(f"{CONFIG_PACKAGE}.py must not import from the project.")
    return f"{_FUTURE}\n" + "\n".join(lines) + "\n"


def remote_code_files() -> dict[str, str]:
    """`{file name: source}` of the code files a Hub repo carries, named as `AUTO_MAP` refers to them."""
    return {f"{CONFIG_PACKAGE}.py": flat_configuration_source(), f"{MODEL_PACKAGE}.py": flat_modeling_source()}
