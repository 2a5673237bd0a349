"""Dependencies are declared where they are imported: what the web app imports when it loads is
in ``[project].dependencies``; what it imports only inside a function (an optional tokenizer)
is at least in one of the extras."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WEB_PACKAGES = ("cope_studio", "accounts", "policies", "labeling")
OURS = {*WEB_PACKAGES, "worker", "tests"}


def _declared() -> tuple[set[str], set[str]]:
    """(web dependencies, every extra's dependencies), as normalised distribution names."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {_normalise(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}

    extras = project["optional-dependencies"].values()
    return names(project["dependencies"]), set().union(*(names(e) for e in extras))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.AST, *, in_function: bool = False) -> Iterator[tuple[str, bool]]:
    """(top-level name, imported inside a function) of every import under ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name.split(".")[0], in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield node.module.split(".")[0], in_function
        else:
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _imports(node, in_function=in_function or function)


def _third_party(*, on_load_only: bool) -> dict[str, set[str]]:
    """{distribution: files importing it} over the web packages (migrations excluded), of the
    imports made when a module loads, or of all of them."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for package in WEB_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for name, in_function in _imports(ast.parse(path.read_text())):
                if (on_load_only and in_function) or name in OURS:
                    continue
                if name in sys.stdlib_module_names:
                    continue
                for dist in owners.get(name, [name]):
                    found.setdefault(_normalise(dist), set()).add(str(path.relative_to(REPO)))
    return found


def test_what_the_web_app_imports_on_load_is_a_web_dependency() -> None:
    web, _extras = _declared()
    undeclared = {d: files for d, files in _third_party(on_load_only=True).items() if d not in web}
    assert not undeclared, f"imported on load but not in [project].dependencies: {undeclared}"


def test_what_it_imports_inside_a_function_is_declared_somewhere() -> None:
    web, extras = _declared()
    found = _third_party(on_load_only=False)
    undeclared = {d: files for d, files in found.items() if d not in web | extras}
    assert not undeclared, f"imported but declared nowhere in pyproject.toml: {undeclared}"
