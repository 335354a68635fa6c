"""``python -m unext_long``: the ``unext-long`` command, as torchrun's ``-m unext_long`` runs it."""

from unext_long.cli import main

main()
