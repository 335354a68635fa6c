"""Shared fixtures: small synthetic data made on the fly, once per test session.

Every fixture here builds on the real toolkit (the phantom, then the export), so the
tests of later stages run on exactly what users get from the earlier ones.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# Tests run on the CPU with few threads: the suite must fit two cores.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Importing ultralytics sets NUMEXPR_MAX_THREADS to its own thread count (1 on two cores); the
# command lines the tests start inherit it, and numexpr (pandas' accelerator) then prints an error
# line when OMP_NUM_THREADS asks for more. Asking numexpr for one thread keeps stderr clean.
os.environ["NUMEXPR_NUM_THREADS"] = "1"

# Small and fast: 2 mm voxels (about 100x115x95), 4 cases, one without new lesions.
PHANTOM_VOXEL_MM = 2.0
PHANTOM_CASES = 4


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-case phantom dataset in the MSSEG-2 layout (load it as dataset ``phantom``)."""
    from simulation.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom")
    write_phantom(root, cases=PHANTOM_CASES, voxel=PHANTOM_VOXEL_MM, seed=0)
    return root


@pytest.fixture(scope="session")
def misaligned_phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``phantom_root`` but t0 carries a known rigid misalignment."""
    from simulation.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom_misaligned")
    write_phantom(root, cases=2, voxel=PHANTOM_VOXEL_MM, seed=1, misalign=True)
    return root


@pytest.fixture(scope="session")
def realistic_phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-case realistic phantom at 2 mm: a head, uint16/int16 storage, t0 zero beyond a shorter
    field of view, ids ``013``, ``015``, ``017``, ``019`` (load it as dataset ``phantom``)."""
    from simulation.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom_realistic")
    write_phantom(root, cases=PHANTOM_CASES, voxel=PHANTOM_VOXEL_MM, seed=0, realistic=True)
    return root


@pytest.fixture(scope="session")
def thick_phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``realistic_phantom_root`` with 4 mm axial slices (2x2x4 mm voxels), 2 cases."""
    from simulation.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom_thick")
    write_phantom(root, cases=2, voxel=PHANTOM_VOXEL_MM, seed=2, realistic=True, slice_thickness=4.0)
    return root


@pytest.fixture(scope="session")
def phantom_export(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default triplanar 9-channel export of ``phantom_root`` at 2 mm, 2 train / 2 val cases.

    The dataset YAML is ``<returned folder>/phantom_long.yaml``.
    """
    from slicer.export import ExportOptions, export_dataset

    out = tmp_path_factory.mktemp("export")
    export_dataset(
        ExportOptions(
            dataset="phantom", root=phantom_root, out=out, spacing=PHANTOM_VOXEL_MM, val_fraction=0.5, seed=0
        )
    )
    return out


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every socket connection in this process raise (prove nothing downloads)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
