"""The dataset registry (``datasets.yaml``) and the case records it yields.

>>> import tempfile
>>> from simulation.phantom import write_phantom
>>> tmp = tempfile.TemporaryDirectory()
>>> _ = write_phantom(Path(tmp.name), cases=2, voxel=4.0)
>>> cases = load_dataset("phantom", root=tmp.name)
>>> cases[0].id, cases[0].scanner, cases[0].t1.name, cases[0].t0.name
('case000', 'siemens_aera_1.5T', 'flair_time02_on_middle_space.nii.gz', 'flair_time01_on_middle_space.nii.gz')
>>> len(cases[0].raters), cases[0].brain_mask.name
(4, 'brain_mask.nii.gz')
>>> tmp.cleanup()
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runtime.errors import InputError
from runtime.files import plain_name
from slicer.io import check_same_grid, load_nifti

__all__ = ["Case", "DatasetSpec", "default_registry_path", "load_registry", "load_dataset", "check_case"]

FIELD = re.compile(r"\{(\w+)\}")
SPLITS = ("train", "val", "test")
REGISTRY_ENV = "MSLONG_DATASETS"


@dataclass(frozen=True)
class Case:
    """One patient: file paths and metadata, nothing loaded yet."""

    id: str
    t1: Path
    t0: Path | None = None
    consensus: Path | None = None
    raters: tuple[Path, ...] = ()
    brain_mask: Path | None = None
    scanner: str = "unknown"
    split: str | None = None
    dataset: str = ""
    fields: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def is_longitudinal(self) -> bool:
        return self.t0 is not None


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of the registry, with its root resolved."""

    name: str
    root: Path
    t1: str
    t0: str | None = None
    consensus: str | None = None
    raters: str | None = None
    n_raters: int = 0
    brain_mask: str | None = None
    metadata: str | None = None
    scanner_field: str | None = None
    split_field: str | None = None
    split_map: dict[str, str] = field(default_factory=dict)
    default_scanner: str = "unknown"
    description: str = ""
    source: Path = Path("datasets.yaml")


def default_registry_path() -> Path:
    """``$MSLONG_DATASETS``, else ``./datasets.yaml``, else the one at the repository root."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    local = Path.cwd() / "datasets.yaml"
    if local.is_file():
        return local
    return Path(__file__).resolve().parents[1] / "datasets.yaml"


def load_registry(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read the registry YAML and return its ``datasets`` mapping."""
    path = Path(path) if path is not None else default_registry_path()
    if not path.is_file():
        raise InputError(path, "dataset registry not found")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(path, f"broken YAML{where}: {getattr(error, 'problem', error)}") from None
    if not isinstance(content, dict) or not isinstance(content.get("datasets"), dict):
        raise InputError(path, "expected a top-level 'datasets:' mapping")
    return content["datasets"]


def _spec(name: str, root: str | Path | None, registry: str | Path | None) -> DatasetSpec:
    source = Path(registry) if registry is not None else default_registry_path()
    entries = load_registry(source)
    if name not in entries:
        raise InputError(source, f"no dataset named '{name}' (known: {', '.join(sorted(entries))})")
    entry = dict(entries[name])
    if not isinstance(entry.get("t1"), str):
        raise InputError(source, f"dataset '{name}' needs a 't1' file pattern")
    env = entry.pop("root_env", None)
    chosen = root or (os.environ.get(env) if env else None) or entry.get("root")
    if chosen is None:
        raise InputError(source, f"dataset '{name}' has no root; give --root")
    chosen_path = Path(chosen).expanduser()
    if not chosen_path.is_absolute() and root is None:
        chosen_path = source.parent / chosen_path
    if not chosen_path.is_dir():
        raise InputError(chosen_path, f"dataset root of '{name}' does not exist")
    entry["root"] = chosen_path
    known = set(DatasetSpec.__dataclass_fields__) - {"name", "source"}
    unknown = set(entry) - known
    if unknown:
        raise InputError(source, f"dataset '{name}' has unknown keys: {', '.join(sorted(unknown))}")
    return DatasetSpec(name=name, source=source, **entry)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = FIELD.split(pattern)
    # Even items are literal text, odd items field names; a field never spans folders.
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return re.compile(f"^{regex}$")


def _discover(spec: DatasetSpec) -> list[dict[str, str]]:
    if "{case}" not in spec.t1:
        raise InputError(spec.source, f"dataset '{spec.name}': the t1 pattern must contain {{case}}")
    glob = FIELD.sub("*", spec.t1)
    regex = _pattern_regex(spec.t1)
    found = []
    for path in sorted(spec.root.glob(glob)):
        match = regex.match(path.relative_to(spec.root).as_posix())
        if match:
            found.append(match.groupdict())
    if not found:
        raise InputError(spec.root, f"no file matches the t1 pattern '{spec.t1}' of dataset '{spec.name}'")
    return found


def _read_metadata(spec: DatasetSpec) -> dict[str, dict[str, str]]:
    if spec.metadata is None:
        return {}
    path = spec.root / spec.metadata
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"is not a text CSV ({type(error).__name__})") from None
    if rows and "case" not in rows[0]:
        raise InputError(path, "metadata CSV needs a 'case' column")
    repeated = sorted(case for case, n in Counter(row["case"] for row in rows).items() if n > 1)
    if repeated:
        raise InputError(path, f"case id(s) listed more than once: {', '.join(repeated[:5])}")
    return {row["case"]: row for row in rows}


def _resolve(
    spec: DatasetSpec, pattern: str | None, fields: dict[str, str], *, required: bool
) -> Path | None:
    if pattern is None:
        return None
    path = spec.root / pattern.format(**fields)
    if not path.is_file():
        if required:
            raise InputError(path, f"missing file of case '{fields['case']}' (pattern '{pattern}')")
        return None
    return path


def _make_case(spec: DatasetSpec, fields: dict[str, str], meta: dict[str, str]) -> Case:
    raters = tuple(
        p
        for r in range(1, spec.n_raters + 1)
        if (p := _resolve(spec, spec.raters, {**fields, "rater": str(r)}, required=True)) is not None
    )
    scanner = meta.get("scanner") or (fields.get(spec.scanner_field) if spec.scanner_field else None)
    split = meta.get("split") or (fields.get(spec.split_field) if spec.split_field else None)
    split = spec.split_map.get(split, split) if split else None
    if split is not None and split not in SPLITS:
        raise InputError(
            spec.source, f"case '{fields['case']}' has split '{split}', expected one of {SPLITS}"
        )
    return Case(
        id=plain_name(fields["case"], spec.root / spec.t1.format(**fields)),
        t1=spec.root / spec.t1.format(**fields),
        t0=_resolve(spec, spec.t0, fields, required=True),
        consensus=_resolve(spec, spec.consensus, fields, required=True),
        raters=raters,
        brain_mask=_resolve(spec, spec.brain_mask, fields, required=False),
        scanner=scanner or spec.default_scanner,
        split=split,
        dataset=spec.name,
        fields=fields,
    )


def load_dataset(
    name: str, root: str | Path | None = None, registry: str | Path | None = None, *, check: bool = True
) -> list[Case]:
    """Turn a registry entry into case records, sorted by id.

    Args:
        name: the dataset's key in the registry (``msseg2``, ``msseg1``, ``phantom``...).
        root: overrides the registry's root and its environment variable.
        registry: the YAML file; default :func:`default_registry_path`.
        check: open every file's header and check that t0, t1 and masks share one 3D grid
            (for longitudinal data: MSSEG-2's files are all on the middle space).
    """
    spec = _spec(name, root, registry)
    metadata = _read_metadata(spec)
    cases = [_make_case(spec, fields, metadata.get(fields["case"], {})) for fields in _discover(spec)]
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise InputError(spec.root, f"dataset '{name}' has duplicate case ids")
    if check:
        for case in cases:
            check_case(case)
    return cases


def check_case(case: Case, *, same_grid_t0: bool = True) -> None:
    """Open headers (not voxels): every file is one 3D volume, masks on the t1 grid.

    ``same_grid_t0`` also requires t0 on the t1 grid; set it False when t0 will be registered.
    """
    reference = load_nifti(case.t1)
    masks = [p for p in (case.consensus, case.brain_mask, *case.raters) if p is not None]
    for path in masks:
        check_same_grid(load_nifti(path), reference, path, case.t1)
    if case.t0 is not None:
        t0 = load_nifti(case.t0)
        if same_grid_t0:
            check_same_grid(t0, reference, case.t0, case.t1)
