import gc
import sys
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compiled programs after each test module.

    Every compiled XLA CPU program keeps memory mappings; the whole suite compiles enough of
    them to pass Linux's default limit of 65530 mappings per process (vm.max_map_count), and
    the next compilation then crashes. No test relies on a program compiled by another module.
    """
    yield
    jax.clear_caches()
    gc.collect()
