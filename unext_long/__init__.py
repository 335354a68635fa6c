"""UNeXt with a two-timepoint stem, trained and run on the slicer's 2D export.

Modules: :mod:`~unext_long.layers` (blocks), :mod:`~unext_long.stems` (two-timepoint stems),
:mod:`~unext_long.model` (UNeXt and its factories), :mod:`~unext_long.data` (the export as a
dataset), :mod:`~unext_long.losses`, :mod:`~unext_long.train`, :mod:`~unext_long.predict`
and :mod:`~unext_long.cli` (``unext-long train|predict``). Torch is imported by the
submodules, not here, so ``unext-long --help`` stays instant.
"""
