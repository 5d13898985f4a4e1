import gc
import os
import sys
from pathlib import Path

import pytest

# Read by XLA when JAX first starts its CPU backend, and inherited by every command a test
# runs. The suite compiles over a thousand small programs and runs most for moments, so it asks
# for XLA's cheapest compilation (no LLVM optimisation passes): a quarter less time on the
# suite's training and command-line tests. It changes how fast a program runs, not its result.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402

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
