"""yolo_long: YOLOv9-seg with a two-timepoint stem, trained by the plain ultralytics CLI, offline.

* ``yolo-long init`` builds an untrained checkpoint for a dataset's channels
  (:func:`yolo_long.build.init_checkpoint`) and its ultralytics configuration;
  ``yolo segment train cfg=MODEL.train.yaml`` then trains it from scratch.
* ``yolo-long predict`` writes one probability PNG per slice (:mod:`yolo_long.predict`).
* Ultralytics runs offline in any process that imports yolo_long (:mod:`yolo_long.offline`):
  the environment is set here, the in-memory patches as soon as ultralytics is loaded.
"""

import sys

from yolo_long import offline

__version__ = "0.1.0"

offline.set_environment()  # cheap; keeps a later `import ultralytics` from probing the network
if "ultralytics" in sys.modules:  # e.g. unpickling our checkpoint from the plain `yolo` CLI
    offline.apply()
