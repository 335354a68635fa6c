"""The folders are the architecture: packages import downwards only, and none outgrows the rest.

runtime (the shared base) <- simulation <- slicer <- the networks, fusion <- mslong. Every
import counts, those inside functions too, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "simulation", "slicer", "unext_long", "yolo_long", "fusion", "mslong")
STAGES = PACKAGES[1:]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(PACKAGES)


def _package_imports() -> dict[str, set[str]]:
    return {
        package: set().union(*(_imported_packages(p) for p in (ROOT / package).rglob("*.py"))) - {package}
        for package in PACKAGES
    }


def _lines(package: str) -> int:
    return sum(len(p.read_text().splitlines()) for p in (ROOT / package).rglob("*.py"))


def test_runtime_imports_no_stage() -> None:
    assert _package_imports()["runtime"] == set()


def test_no_cycle_between_packages() -> None:
    imports = _package_imports()

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(
            step == target or (step not in seen and reaches(step, target, seen | {step}))
            for step in imports[start]
        )

    cycles = [package for package in PACKAGES if reaches(package, package, {package})]
    assert cycles == [], f"import cycles through {cycles}: {imports}"


def test_simulation_builds_on_runtime_only() -> None:
    assert _package_imports()["simulation"] <= {"runtime"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_above_a_third_of_the_code(package: str) -> None:
    total = sum(_lines(p) for p in PACKAGES)
    assert _lines(package) <= 0.35 * total, f"{package}: {_lines(package)} of {total} lines"


def test_slicer_keeps_no_runtime_module() -> None:
    moved = {"devices.py", "provenance.py", "cluster.py", "errors.py", "arguments.py", "predictions.py"}
    assert moved.isdisjoint(p.name for p in (ROOT / "slicer").iterdir())
