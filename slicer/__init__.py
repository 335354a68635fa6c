"""slicer: from NIfTI volumes to the 2.5D triplanar dataset every model of mslong trains on.

It owns reading datasets (``datasets.yaml``), canonical orientation, registration,
resampling, intensity normalisation, the synthetic longitudinal phantom, lesion-evolution
simulation and the 2D export. It knows nothing about networks.
"""

__version__ = "0.1.0"
