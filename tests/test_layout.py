"""The folders are the architecture: packaging and dependency direction are checked here.

- every package directory is listed in pyproject's `[tool.setuptools] packages` under its
  `kickstand.*` name, so a non-editable install (the Dockerfile's) contains it;
- `protocol` imports nothing from edge / cloud / simulators; `edge` and `cloud` import
  nothing from simulators nor from each other.
"""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]
FOLDERS = ["protocol", "edge", "cloud", "simulators", "hardware-tests", "testing"]
SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}

# package -> the kickstand.* packages it must not import
FORBIDDEN = {
    "kickstand.protocol": ("kickstand.edge", "kickstand.cloud", "kickstand.simulators"),
    "kickstand.edge": ("kickstand.cloud", "kickstand.simulators"),
    "kickstand.cloud": ("kickstand.edge", "kickstand.simulators"),
}


def _folder_to_import_name() -> dict[str, str]:
    return {folder: name for name, folder in PACKAGE_DIR.items()}


def _walk(folder: str) -> list[Path]:
    base = ROOT / folder
    subdirs = (
        p for p in base.rglob("*")
        if p.is_dir() and not SKIP_PARTS.intersection(p.relative_to(ROOT).parts)
    )
    return [base, *sorted(subdirs)]


def import_name_of(directory: Path) -> str:
    rel = directory.relative_to(ROOT)
    top = _folder_to_import_name()[rel.parts[0]]
    return ".".join([top, *rel.parts[1:]])


def test_every_top_folder_maps_to_a_kickstand_name() -> None:
    mapping = _folder_to_import_name()
    for folder in FOLDERS:
        assert folder in mapping, f"{folder}/ missing from [tool.setuptools.package-dir]"
        assert mapping[folder].startswith("kickstand."), mapping[folder]


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_package_directory_is_listed(folder: str) -> None:
    missing = []
    for directory in _walk(folder):
        if (directory / "__init__.py").is_file():
            name = import_name_of(directory)
            if name not in PACKAGES:
                missing.append(f"{directory.relative_to(ROOT)} -> {name}")
    assert not missing, (
        "package directories missing from [tool.setuptools] packages in pyproject.toml "
        f"(a non-editable install would leave them out): {missing}"
    )


def _covered_by_package_data(path: Path) -> bool:
    package_data: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    directory = path.parent
    while directory != ROOT and not (directory / "__init__.py").is_file():
        directory = directory.parent
    if directory == ROOT:
        return False
    rel = path.relative_to(directory).as_posix()
    patterns = package_data.get(import_name_of(directory), []) + package_data.get("*", [])
    return any(fnmatch.fnmatch(rel, pattern) for pattern in patterns)


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_python_module_left_out_of_the_install(folder: str) -> None:
    # A .py file in a folder without __init__.py is in no listed package: an installed copy
    # lacks it unless package-data carries it (Alembic's versions/ does that).
    orphans = [
        str(path.relative_to(ROOT))
        for directory in _walk(folder)
        if not (directory / "__init__.py").is_file()
        for path in sorted(directory.glob("*.py"))
        if not _covered_by_package_data(path)
    ]
    assert not orphans, f"modules in no package and not in package-data: {orphans}"


def test_listed_packages_exist() -> None:
    stale = []
    for name in PACKAGES:
        for prefix, folder in sorted(PACKAGE_DIR.items(), key=lambda kv: -len(kv[0])):
            if name == prefix or name.startswith(prefix + "."):
                rest = name[len(prefix):].lstrip(".").split(".") if name != prefix else []
                if not (ROOT / folder / Path(*rest) / "__init__.py").is_file():
                    stale.append(name)
                break
        else:
            stale.append(name)
    assert not stale, f"listed in pyproject but no such package directory: {stale}"


def test_harness_data_files_are_package_data() -> None:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["kickstand.testing"]
    for data_file in ("mosquitto.conf", "mosquitto.acl", "influxdb.conf"):
        assert (ROOT / "testing" / data_file).is_file()
        assert any(fnmatch.fnmatch(data_file, p) for p in patterns), data_file


# -- dependency direction ---------------------------------------------------------------


def imports_of(path: Path, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Absolute names of everything `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _modules(folder: str) -> list[tuple[Path, str, bool]]:
    result = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if SKIP_PARTS.intersection(path.relative_to(ROOT).parts):
            continue
        package = import_name_of(path.parent)
        is_package = path.name == "__init__.py"
        module = package if is_package else f"{package}.{path.stem}"
        result.append((path, module, is_package))
    return result


def _violates(target: str, forbidden: tuple[str, ...]) -> bool:
    return any(target == f or target.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    folder = PACKAGE_DIR[package]
    violations = []
    for path, module, is_package in _modules(folder):
        for lineno, target in imports_of(path, module, is_package):
            if _violates(target, FORBIDDEN[package]):
                violations.append(f"{path.relative_to(ROOT)}:{lineno} imports {target}")
    assert not violations, f"{package} must not import {FORBIDDEN[package]}: {violations}"


def test_import_scan_sees_relative_and_dynamic_imports(tmp_path: Path) -> None:
    # The scanner must catch the sneaky forms too, or the test above proves nothing.
    source = tmp_path / "mod.py"
    source.write_text(
        "from ...cloud import db\n"
        "from ..station import agent\n"
        "import kickstand.simulators.fleet as f\n"
        "import importlib\n"
        "importlib.import_module('kickstand.cloud.trips')\n"
    )
    found = [t for _, t in imports_of(source, "kickstand.edge.station.mod", False)]
    assert "kickstand.cloud.db" in found
    assert "kickstand.edge.station.agent" in found
    assert "kickstand.simulators.fleet" in found
    assert "kickstand.cloud.trips" in found
    assert _violates("kickstand.cloud.db", FORBIDDEN["kickstand.edge"])
    assert not _violates("kickstand.cloudy", FORBIDDEN["kickstand.edge"])


# -- routes translate HTTP: none imports another ----------------------------------------

ROUTES_PACKAGE = "kickstand.cloud.api.routes"


def _route_imports_of_routes(path: Path, module: str, is_package: bool) -> list[str]:
    """Where a module under cloud/api/routes/ imports another module under it."""
    return [
        f"{path.name}:{lineno} imports {target}"
        for lineno, target in imports_of(path, module, is_package)
        if target.startswith(ROUTES_PACKAGE + ".")
        and not (target == module or target.startswith(module + "."))
    ]


def test_no_routes_module_imports_another() -> None:
    # What two routes share (views, the unlock flow's answers, idempotency) lives outside
    # cloud/api/routes/; a route reaching into another route's module couples their HTTP.
    violations = [
        v
        for path, module, is_package in _modules("cloud")
        if module.startswith(ROUTES_PACKAGE + ".") or module == ROUTES_PACKAGE
        for v in _route_imports_of_routes(path, module, is_package)
    ]
    assert len([m for _, m, _ in _modules("cloud") if m.startswith(ROUTES_PACKAGE + ".")]) > 5
    assert not violations, f"a routes module imports another routes module: {violations}"


def test_route_import_scan_sees_sibling_imports(tmp_path: Path) -> None:
    source = tmp_path / "map.py"
    source.write_text(
        "from kickstand.cloud.api.routes.rents import rider_rents\n"
        "from .networks import in_area\n"
        "from kickstand.cloud.api.views import rent_public\n"
    )
    found = _route_imports_of_routes(source, f"{ROUTES_PACKAGE}.map", False)
    assert len(found) == 4, found  # two modules, each also as module.name
    assert all("rents" in f or "networks" in f for f in found)
