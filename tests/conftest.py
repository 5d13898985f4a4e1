import gc
import sys
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).parent))

SLOWEST_MODULES = (
    "test_cli",
    "test_tutorials",
    "test_sampling",
    "test_parallel",
    "test_data",
    "test_benchmarks",
)
"""The slowest test modules, slowest first (seconds summed per module by ``--durations=0``).

They are handed to the workers first, so that no long module starts when the other workers are
nearly done; the other modules follow in their usual order. Only the schedule depends on it.
"""

MAPPINGS_BEFORE_CLEARING = 40_000
"""How many memory mappings a test process may hold before it drops its compiled programs."""


def memory_mappings() -> int:
    """How many memory mappings this process holds (0 where /proc is not there)."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return 0


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compiled programs after a test module once the process holds many.

    Every compiled XLA CPU program keeps memory mappings; the whole suite compiles enough of
    them to pass Linux's default limit of 65530 mappings per process (vm.max_map_count), and
    the next compilation then crashes. Dropping them after every module would make each module
    compile again the programs the modules before it shared (a training step, a sampler), so
    they are dropped only when the count nears the limit. No test relies on a program another
    module compiled.
    """
    yield
    if memory_mappings() > MAPPINGS_BEFORE_CLEARING:
        jax.clear_caches()
        gc.collect()
