"""Dependencies run one way: lower layers never import higher ones, and nothing cycles.

Reads the source with ``ast`` (nothing is imported), so every import counts: module
level, ``TYPE_CHECKING`` blocks and imports inside functions. Each failure names the
offending ``file:line``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "schemas")

# Lowest first. A module may import its own layer and the ones below, never above.
LAYERS = (
    ("gateway", "gateway.errors", "gateway.fileio", "gateway.logs", "gateway.scoring",
     "gateway.calibration", "gateway.common", "schemas"),
    ("gateway.config", "gateway.config_file", "gateway.config_docs", "gateway.models",
     "gateway.observability"),
    ("gateway.engine", "gateway.registry", "gateway.tenancy"),
    ("gateway.training", "gateway.service", "gateway.finetune", "gateway.cluster"),
    ("gateway.api",),
    ("gateway.server", "gateway.evaluation", "gateway.cli"),
)  # fmt: skip
# Bans inside the allowed direction: importer package -> forbidden prefixes.
FORBIDDEN = {
    "gateway.common": ("gateway.fileio", "gateway.logs", "gateway.scoring"),
    "gateway.training": ("gateway.service", "gateway.engine", "gateway.tenancy"),
    "gateway.service": ("gateway.training", "gateway.engine"),
    "gateway.finetune": ("gateway.engine", "gateway.service"),
    "gateway.api": ("gateway.engine",),
    # shared state works on the registry and tenants, never on the engine or requests
    "gateway.cluster": (
        "gateway.engine",
        "gateway.service",
        "gateway.training",
        "gateway.finetune",
    ),
}
# Exceptions to FORBIDDEN: the service speaks the engine's vocabulary, not vLLM's.
ALLOWED = {"gateway.service": ("gateway.engine.types",)}
# Third-party packages that only some of our packages may import.
THIRD_PARTY = {
    "vllm": ("gateway.engine",),
    "fastapi": ("gateway.api", "gateway.server"),
    "starlette": ("gateway.api", "gateway.server"),
    # the shared-state servers, each behind one package
    "psycopg": ("gateway.cluster",),
    "alembic": ("gateway.cluster",),
    "sqlalchemy": ("gateway.cluster",),
    "redis": ("gateway.tenancy.redis_limits",),
    "boto3": ("gateway.registry.objects",),
    "botocore": ("gateway.registry.objects",),
}
# The product (gateway/, schemas/) is what `pip install lora-gateway` ships: it never imports
# the tools beside it (tools/gateway_tools: benchmarks, charts, screenshots), the tests, or
# the packages only those need, which the product's install does not bring.
PRODUCT_NEVER_IMPORTS = ("gateway_tools", "tests", "matplotlib", "playwright", "pytest")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module, resolved to a module when it is one
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports_of(module: str, path: Path, modules: set[str]) -> list[Import]:
    """Every import in the file; ``from pkg import name`` becomes ``pkg.name`` when that
    is one of our modules. Relative imports are resolved against the importing module."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, where) for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append(Import(module, candidate if candidate in modules else base, where))
    return found


def within(module: str, prefix: str) -> bool:
    """``module`` is ``prefix`` or lies inside it (the root package contains only itself)."""
    return module == prefix or (prefix != "gateway" and module.startswith(prefix + "."))


def package_of(module: str, table: tuple[str, ...] | dict) -> str | None:
    """The longest entry of ``table`` that holds ``module``."""
    return max((p for p in table if within(module, p)), key=len, default=None)


def layer_of(module: str) -> int | None:
    return next((rank for rank, layer in enumerate(LAYERS) if package_of(module, layer)), None)


def all_imports() -> list[Import]:
    files = source_files()
    return [i for m, p in files.items() for i in imports_of(m, p, set(files))]


def is_ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def layer_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        if not is_ours(imp.target):
            continue
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source is None or target is None:
            problems.append(f"{imp}  (not in LAYERS)")
        elif target > source:
            problems.append(f"{imp}  (a higher layer)")
        package = package_of(imp.source, FORBIDDEN)
        if package is None or package_of(imp.target, FORBIDDEN[package]) is None:
            continue
        if package_of(imp.target, ALLOWED.get(package, ())) is None:
            problems.append(f"{imp}  ({package} may not import {imp.target})")
    return list(dict.fromkeys(problems))  # one line per import statement


def third_party_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        owners = THIRD_PARTY.get(imp.target.split(".")[0])
        if owners is not None and package_of(imp.source, owners) is None:
            problems.append(f"{imp}  (only {', '.join(owners)} may)")
    return list(dict.fromkeys(problems))


def product_import_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        if (root := imp.target.split(".")[0]) in PRODUCT_NEVER_IMPORTS:
            problems.append(f"{imp}  (the product may not import {root})")
    return list(dict.fromkeys(problems))


def find_cycle(imports: list[Import]) -> list[Import]:
    """One import cycle between our modules as its edges, or [] when there is none."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if is_ours(imp.target) and imp.target != imp.source:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[Import] = []

    def visit(node: str) -> list[Import]:
        state[node] = 1
        for target, imp in edges.get(node, {}).items():
            path.append(imp)
            if state.get(target) == 1:
                start = next(i for i, e in enumerate(path) if e.source == target)
                return path[start:]
            if target not in state and (cycle := visit(target)):
                return cycle
            path.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in source_files() if layer_of(m) is None]
    assert not unplaced, f"add these to LAYERS in {Path(__file__).name}: {unplaced}"


def test_imports_follow_the_layers() -> None:
    problems = layer_violations(all_imports())
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_vllm_and_fastapi_stay_in_their_packages() -> None:
    problems = third_party_violations(all_imports())
    assert not problems, "third-party imports out of place:\n" + "\n".join(problems)


def test_the_product_never_imports_the_tools() -> None:
    problems = product_import_violations(all_imports())
    assert not problems, "the product imports beyond itself:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    cycle = find_cycle(all_imports())
    assert not cycle, "import cycle:\n" + "\n".join(str(e) for e in cycle)


@pytest.fixture
def parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], list[Import]]:
    """The imports of a one-file source, as the tree checks would see them."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)

    def parse(source: str, module: str) -> list[Import]:
        (tmp_path / "m.py").write_text(source)
        return imports_of(module, tmp_path / "m.py", {"gateway.service.chat"})

    return parse


def test_the_layer_check_catches_each_rule(parse: Callable[[str, str], list[Import]]) -> None:
    upward = parse("def f():\n    from gateway.service import chat\n", "gateway.training.x")
    assert upward[0].target == "gateway.service.chat"  # a module, not its package
    assert [p.split(":")[:2] for p in layer_violations(upward)] == [["m.py", "2"]]
    engine = parse("from gateway.engine.vllm_engine import X\n", "gateway.api.x")
    assert "gateway.api may not import" in layer_violations(engine)[0]
    assert (
        layer_violations(parse("from gateway.engine.types import X\n", "gateway.service.x")) == []
    )
    higher = parse("from gateway.server import X\n", "gateway.config")
    assert "a higher layer" in layer_violations(higher)[0]
    assert parse("from . import chat\n", "gateway.service.admission")[0].target == (
        "gateway.service.chat"
    )


def test_the_third_party_check_catches_vllm_and_fastapi(
    parse: Callable[[str, str], list[Import]],
) -> None:
    web = parse("import fastapi\nfrom vllm import LLM\n", "gateway.service.x")
    assert len(third_party_violations(web)) == 2
    assert third_party_violations(parse("import fastapi\n", "gateway.api.x")) == []


def test_the_product_check_catches_the_tools(parse: Callable[[str, str], list[Import]]) -> None:
    lazy = parse("def f():\n    from gateway_tools.launch import launch\n", "gateway.cli.x")
    assert "may not import gateway_tools" in product_import_violations(lazy)[0]
    charts = parse("import matplotlib.pyplot as plt\n", "gateway.evaluation.x")
    assert len(product_import_violations(charts)) == 1
    assert product_import_violations(parse("import httpx\n", "gateway.cli.x")) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    a_to_b = Import("gateway.a", "gateway.b", "a.py:1")
    b_to_c = Import("gateway.b", "gateway.c", "b.py:3")
    c_to_a = Import("gateway.c", "gateway.a", "c.py:2")
    assert find_cycle([a_to_b, b_to_c, c_to_a]) == [a_to_b, b_to_c, c_to_a]
    assert find_cycle([a_to_b, b_to_c]) == []
