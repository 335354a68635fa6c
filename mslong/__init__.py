"""mslong: the end-to-end pipeline that wires slicer, the networks and fusion together.

It owns no algorithm of its own: ``mslong segment`` (one patient, the MSSEG-2 challenge
contract) and ``mslong demo`` (the whole pipeline on the synthetic phantom) only call the
four packages below it.
"""

__version__ = "0.1.0"
