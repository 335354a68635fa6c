"""Synthetic longitudinal FLAIR phantom in the MSSEG-2 layout (``slicer phantom OUT``).

Each case is the MNI152 2009 brain (:mod:`.anatomy`) seen through a small random affine,
with FLAIR contrast, bias field and Rician noise from a named scanner profile
(:mod:`.scanners`), existing and new lesions (:mod:`.blobs`) and four raters
(:mod:`.raters`); :mod:`.case` draws one case and :mod:`.write` writes the dataset. The
realistic mode adds a head (:mod:`.head`), thick slices, integer storage and a baseline with
a shorter field of view (:mod:`.acquisition`). Everything is drawn from
``numpy.random.default_rng([seed, case_index])``, so a seed gives byte-identical files and a
case does not depend on the others.

Written per case (into ``OUT/<case>/``, atomically): ``flair_time01_on_middle_space.nii.gz``
(t0), ``flair_time02_on_middle_space.nii.gz`` (t1), ``ground_truth.nii.gz``,
``ground_truth_expert{1..4}.nii.gz``, ``brain_mask.nii.gz``, ``phantom.json`` (how the case
was made) and, with ``misalign``, ``misalignment.json``; then ``OUT/cases.csv``.

>>> import tempfile
>>> from pathlib import Path
>>> tmp = tempfile.TemporaryDirectory()
>>> table = write_phantom(Path(tmp.name), cases=2, voxel=4.0)
>>> list(table.columns)
['case', 'scanner', 'new_lesions', 'new_lesion_voxels', 'existing_lesions', 'enlarging_lesions', 'misaligned']
>>> table["case"].tolist(), sorted(path.name for path in (Path(tmp.name) / "case000").iterdir())[:3]
(['case000', 'case001'], ['brain_mask.nii.gz', 'flair_time01_on_middle_space.nii.gz', 'flair_time02_on_middle_space.nii.gz'])
>>> tmp.cleanup()
"""

from simulation.phantom.case import make_case, random_misalignment
from simulation.phantom.write import BRAIN_MASK_NAME, COLUMNS, T0_NAME, T1_NAME, case_id, write_phantom

__all__ = [
    "write_phantom",
    "make_case",
    "random_misalignment",
    "case_id",
    "COLUMNS",
    "T0_NAME",
    "T1_NAME",
    "BRAIN_MASK_NAME",
]
