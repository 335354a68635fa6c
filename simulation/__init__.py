"""simulation: synthetic and simulated data, for training and testing without patients.

The longitudinal FLAIR phantom (``phantom``) writes whole datasets in the MSSEG-2 layout;
lesion evolution (``evolution``) turns a single-time-point scan into a pseudo pair. It
builds on ``runtime`` only, so the slicer can export what it makes.
"""
