"""Orchestration: jobs that chain simulation, training and evaluation (the quickstart, studies).

This is the top library layer, below only the command line: it may import every other equilens
package, and none of them imports it (``tests/test_layers.py`` checks the import graph). Import the
modules themselves (``equilens.workflows.quickstart``); this package imports nothing, so the command line
can build its help without loading torch.
"""
