"""``python -m riskprop`` runs the command-line interface."""

from riskprop.cli import main

main()
