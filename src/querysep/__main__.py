"""``python -m querysep`` runs the command line."""

from .cli import main

main()
