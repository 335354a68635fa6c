"""runtime: the base every stage of mslong shares, and nothing about MRI or networks.

Errors that end a command in one line (``errors``), outputs written atomically (``files``),
the lesion definition every package counts by (``lesions``), device selection (``devices``),
provenance records of output folders (``provenance``), cluster and local shares through
submitit (``cluster``), the command-line helpers (``arguments``), the prediction-PNG
contract between the networks and fusion (``predictions``) and stage timing (``timing``).
It imports none of the stage packages (``slicer``, ``simulation``, the networks, ``fusion``,
``mslong``).
"""
