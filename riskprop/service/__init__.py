"""The node as a service: a schedule of runs, their output folders, progress, metrics and the
operator's admin listener (``riskprop --player NAME``)."""
