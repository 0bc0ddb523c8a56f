"""``toy_grid``: the grid-runner tests' toy model, dataset writer and script (toy_grid.py),
loaded from its file (the tests folder is not a package)."""
import importlib.util
import os

import pytest

TOY_GRID = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_grid.py")


@pytest.fixture(scope="session")
def toy_grid():
    spec = importlib.util.spec_from_file_location("toy_grid", TOY_GRID)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.PATH = TOY_GRID
    return module
