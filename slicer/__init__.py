"""slicer: from NIfTI volumes to the 2.5D triplanar dataset every model of mslong trains on.

It owns reading datasets (``datasets.yaml``) and volumes, canonical orientation, brain mask,
registration, resampling, intensity normalisation, geometry and the 2D export (slices,
labels, masks, manifest, dataset files, the nnU-Net raw dataset). It knows nothing about
networks; synthetic data comes from ``simulation``, the shared runtime from ``runtime``.
"""

__version__ = "0.1.0"
