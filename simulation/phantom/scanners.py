"""Scanner profiles for the phantom: FLAIR contrast, bias field, Rician noise, storage.

Each named profile gives tissue signal levels (CSF dark, WM, GM brighter, lesions
brightest), a contrast gamma, a smooth multiplicative bias field strength, a noise level
and how the scanner stores its values (scale and dtype). A follow-up scan on the same
scanner drifts a little (:meth:`ScannerProfile.drifted`).

>>> rng = np.random.default_rng(0)
>>> clean = np.full((8, 8, 8), PROFILES["siemens_skyra_3T"].wm, np.float32)
>>> image = acquire(clean, PROFILES["siemens_skyra_3T"], rng)
>>> image.dtype, 1000 < float(image.mean()) < 1400
(dtype('int16'), True)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ScannerProfile", "PROFILES", "acquire"]

BIAS_ORDER = 3  # cosines per axis: a smooth field, two or three bumps across the head


@dataclass(frozen=True)
class ScannerProfile:
    """How one scanner renders FLAIR.

    Attributes:
        name: profile name (written to ``cases.csv``).
        csf, gm, wm, lesion: signal of each tissue before gamma (lesion scale 1).
        gamma: contrast exponent applied to the clean signal.
        bias: standard deviation of the log bias field's coefficients.
        noise: Rician noise sigma as a fraction of the WM signal.
        scale: stored value of white matter.
        dtype: ``int16``, ``uint16`` or ``float32``.
    """

    name: str
    csf: float
    gm: float
    wm: float
    lesion: float
    gamma: float
    bias: float
    noise: float
    scale: float
    dtype: str

    def tissue_weights(self) -> np.ndarray:
        """Signals in the atlas' tissue order (csf, gm, wm)."""
        return np.array([self.csf, self.gm, self.wm], np.float32)

    def drifted(self, rng: np.random.Generator) -> ScannerProfile:
        """The same scanner at a later visit: gain and grey/white contrast move by a few %."""
        return replace(
            self,
            gm=self.gm * rng.uniform(0.97, 1.03),
            wm=self.wm * rng.uniform(0.97, 1.03),
            scale=self.scale * rng.uniform(0.9, 1.1),
        )


PROFILES = {
    p.name: p
    for p in (
        ScannerProfile("siemens_aera_1.5T", 0.14, 0.70, 0.55, 1.00, 1.00, 0.10, 0.045, 600.0, "int16"),
        ScannerProfile("siemens_skyra_3T", 0.10, 0.68, 0.50, 1.05, 0.90, 0.15, 0.025, 1200.0, "int16"),
        ScannerProfile("philips_ingenia_3T", 0.08, 0.62, 0.45, 0.95, 1.15, 0.12, 0.030, 1.0, "float32"),
        ScannerProfile("ge_discovery_3T", 0.12, 0.72, 0.52, 1.10, 1.05, 0.18, 0.035, 3000.0, "int16"),
    )
}


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    # exp of a low-order cosine series: smooth, positive, and made from three tiny factors
    # instead of a large Gaussian filter.
    coefficients = rng.normal(0.0, strength, (BIAS_ORDER,) * 3)
    coefficients[0, 0, 0] = 0.0
    x, y, z = (np.cos(np.pi * np.outer(np.linspace(0, 1, n), np.arange(BIAS_ORDER))) for n in shape)
    field = np.einsum("ijk,xi->xjk", coefficients, x)
    field = np.einsum("xjk,yj->xyk", field, y)
    return np.exp(np.einsum("xyk,zk->xyz", field, z).astype(np.float32))


def acquire(clean: np.ndarray, profile: ScannerProfile, rng: np.random.Generator) -> np.ndarray:
    """Turn a clean signal map (profile units) into what the scanner stores.

    Gamma, then bias field, then Rician noise (the magnitude of a complex Gaussian), then
    scaling and the storage type (integers are rounded and clipped to the type's range).
    """
    signal = np.power(np.maximum(clean, 0), profile.gamma, dtype=np.float32)
    signal *= _bias_field(rng, clean.shape, profile.bias)
    sigma = np.float32(profile.noise * profile.wm**profile.gamma)
    real = signal + sigma * rng.standard_normal(clean.shape, np.float32)
    imaginary = sigma * rng.standard_normal(clean.shape, np.float32)
    stored = np.hypot(real, imaginary) * np.float32(profile.scale / profile.wm**profile.gamma)
    dtype = np.dtype(profile.dtype)
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.rint(stored), 0, np.iinfo(dtype).max).astype(dtype)
    return stored.astype(np.float32)
