"""pytest configuration: doctests run over every module (pyproject), except scripts that only tests start."""

collect_ignore = ["_sweep_child.py"]  # a child-process script: it reads sys.argv when imported
