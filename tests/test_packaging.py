"""The installed package set: one OpenCV, whichever of its distributions the dependencies pulled."""

from __future__ import annotations

from importlib import metadata

import numpy as np

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python")


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_one_opencv_release_provides_cv2(tmp_path) -> None:
    import cv2

    versions = {name: v for name in OPENCV_DISTRIBUTIONS if (v := _installed(name)) is not None}
    assert len(set(versions.values())) == 1, (
        f"OpenCV distributions of different releases share cv2/: {versions}"
    )
    # 5.1.0.95 is OpenCV 5.1.0, packaging build 95.
    assert cv2.__version__ == ".".join(next(iter(versions.values())).split(".")[:3])
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert cv2.imwrite(str(tmp_path / "probe.png"), image)
    assert np.array_equal(cv2.imread(str(tmp_path / "probe.png"), cv2.IMREAD_UNCHANGED), image)
