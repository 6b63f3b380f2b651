"""What each install brings matches what its code imports: ``pip install .[cpu]`` has what
the server and training import and none of the development or tools packages; the tools
package (tools/pyproject.toml) declares what it imports beyond the product.

Reads the sources with ``ast`` and the requirements from the pyproject files; a module is
mapped to its distribution with the installed metadata (``yaml`` -> PyYAML)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = (ROOT / "gateway", ROOT / "schemas")
TOOLS = ROOT / "tools" / "gateway_tools"
FIRST_PARTY = {"gateway", "schemas", "gateway_tools", "tests"}
# Imported only by gateway/models/worker.py, which runs inside the quantizer's own virtual
# environment (gateway/models/toolenv.py), never in the server's.
OWN_ENVIRONMENT = {"llmcompressor", "datasets"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalized(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def optional_imports(tree: ast.AST) -> set[int]:
    """The imports inside ``try: ... except ImportError``: the code runs without them."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            found |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return found


def imported_roots(*folders: Path) -> dict[str, str]:
    """Third-party top-level modules imported anywhere in ``folders`` (unless optional)
    -> one place."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            optional = optional_imports(tree)
            for node in ast.walk(tree):
                if id(node) in optional:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    root = name.split(".")[0]
                    if root not in sys.stdlib_module_names and root not in FIRST_PARTY:
                        found.setdefault(root, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@cache
def installed() -> dict[str, list[str]]:
    return packages_distributions()


def distributions(module: str) -> set[str]:
    return {normalized(d) for d in installed().get(module, [module])}


def project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def test_the_product_declares_every_package_it_imports() -> None:
    root = project(ROOT / "pyproject.toml")
    declared = requirement_names(root["dependencies"] + root["optional-dependencies"]["cpu"])
    missing = [
        f"{where}: {module}"
        for module, where in imported_roots(*PRODUCT).items()
        if module not in OWN_ENVIRONMENT and not distributions(module) & declared
    ]
    assert not missing, "imported but not in dependencies or [cpu]:\n" + "\n".join(missing)


def test_the_product_install_brings_no_development_or_tools_package() -> None:
    root = project(ROOT / "pyproject.toml")
    extras = root["optional-dependencies"]
    product = requirement_names(root["dependencies"] + extras["cpu"] + extras["cuda"])
    others = requirement_names(
        extras["dev"] + project(ROOT / "tools" / "pyproject.toml")["dependencies"]
    ) - {"lora-gateway"}
    assert not product & others, f"in the server's install: {sorted(product & others)}"
    assert set(extras) == {"cpu", "cuda", "dev"}, "a new extra: say here who installs it"


def test_the_tools_declare_what_they_import_beyond_the_product() -> None:
    root = project(ROOT / "pyproject.toml")
    tools = project(ROOT / "tools" / "pyproject.toml")
    assert "lora-gateway" in requirement_names(tools["dependencies"])
    declared = requirement_names(
        tools["dependencies"] + root["dependencies"] + root["optional-dependencies"]["cpu"]
    )
    missing = [
        f"{where}: {module}"
        for module, where in imported_roots(TOOLS).items()
        if not distributions(module) & declared
    ]
    assert not missing, "tools import undeclared packages:\n" + "\n".join(missing)
