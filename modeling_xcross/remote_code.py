"""The self-contained `configuration_xcross.py` and `modeling_xcross.py` a Hub repo needs for `trust_remote_code`.

transformers loads remote code as flat files next to `config.json`, resolving only `from .module import` lines
between them. The package spans several modules, so the modeling file is generated from the installed sources:
every module `modeling_xcross.modeling_xcross` needs, in dependency order, with the imports between them removed.
Anything the flattening cannot keep correct (an aliased or star import from the package, a top-level name defined
in two modules) fails here, at publish time, rather than on the user's machine.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

CONFIG_PACKAGE = "configuration_xcross"
MODEL_PACKAGE = "modeling_xcross"
ENTRY_MODULE = "modeling_xcross"
CONFIG_CLASS = "XCrossConfig"
MODEL_CLASS = "XCrossForSequentialRecommendation"
AUTO_MAP = {
    "AutoConfig": f"{CONFIG_PACKAGE}.{CONFIG_CLASS}",
    "AutoModel": f"{MODEL_PACKAGE}.{MODEL_CLASS}",
}
_FUTURE = "from __future__ import annotations"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"Writing remote code needs the `{package}` package installed (pip install xcross-rec); a model "
                           "loaded with trust_remote_code cannot regenerate its own code files.")
    return Path(next(iter(spec.submodule_search_locations)))


def _package_import(node: ast.stmt) -> tuple[str, str] | None:
    """(package, module) when `node` imports from this project (`.x`, `configuration_xcross`, ...), else None."""
    if isinstance(node, ast.Import) and any(alias.name.split(".")[0] in (CONFIG_PACKAGE, MODEL_PACKAGE)
                                            for alias in node.names):
        raise ValueError(f"line {node.lineno}: use `from ... import name` for project imports, not `import`.")
    if not isinstance(node, ast.ImportFrom):
        return None
    if node.level == 1:
        package, module = MODEL_PACKAGE, node.module
    elif node.level == 0 and node.module and node.module.split(".")[0] in (CONFIG_PACKAGE, MODEL_PACKAGE):
        package, module = node.module.split(".")[0], ".".join(node.module.split(".")[1:]) or None
    else:
        return None
    if any(alias.asname or alias.name == "*" for alias in node.names):
        raise ValueError(f"line {node.lineno}: aliased or star imports from the project cannot be flattened.")
    return package, module


def _split(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(modules of this package it imports, names it imports from configuration_xcross, remaining source lines)."""
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    dependencies, config_names, drop = [], [], set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            drop.update(range(node.lineno - 1, node.end_lineno))
            continue
        try:
            target = _package_import(node)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        if target is None:
            continue
        package, module = target
        if package == CONFIG_PACKAGE:
            config_names += [alias.name for alias in node.names]
        elif module is None:
            raise ValueError(f"{path}:{node.lineno}: import from the `{MODEL_PACKAGE}` package itself, not a module.")
        else:
            dependencies.append(module)
        drop.update(range(node.lineno - 1, node.end_lineno))
    return dependencies, config_names, [line for index, line in enumerate(lines) if index not in drop]


def _top_level_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names - {"__all__"}


def flat_modeling_source() -> str:
    """The modules `modeling_xcross.modeling_xcross` needs, concatenated in dependency order into one file."""
    package_dir = _package_dir(MODEL_PACKAGE)
    ordered: list[str] = []
    parts: dict[str, list[str]] = {}
    config_names: set[str] = set()

    def visit(module: str, chain: tuple[str, ...]) -> None:
        if module in chain:
            raise ValueError(f"Import cycle between modules: {' -> '.join(chain + (module,))}.")
        if module in parts:
            return
        dependencies, names, lines = _split(package_dir / f"{module}.py")
        config_names.update(names)
        parts[module] = lines
        for dependency in dependencies:
            visit(dependency, chain + (module,))
        ordered.append(module)

    visit(ENTRY_MODULE, ())
    defined: dict[str, str] = {}
    for module in ordered:
        for name in _top_level_names("\n".join(parts[module])):
            if name in defined:
                raise ValueError(f"`{name}` is defined at top level in both {defined[name]}.py and {module}.py; "
                                 "rename one so the modules can be flattened into a single file.")
            defined[name] = module
    header = [f'"""X-Cross remote code, generated from the `{MODEL_PACKAGE}` package; do not edit."""', "", _FUTURE, ""]
    if config_names:
        header.append(f"from .{CONFIG_PACKAGE} import {', '.join(sorted(config_names))}")
    body = [f"\n# ---- {MODEL_PACKAGE}/{module}.py\n" + "\n".join(parts[module]).strip() + "\n" for module in ordered]
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
