"""Example conftest: nothing is required here.

The betterpg plugin is active once betterpg is installed; the fixtures
``betterpg_branch``, ``betterpg_conn``, ``betterpg_url`` and
``betterpg_branch_factory`` come from it. ``branch_fixture`` makes more,
with any scope.
"""

from betterpg.pytest_plugin import branch_fixture

# One branch shared by the tests of a module (destroyed after the module).
module_db = branch_fixture(scope="module")
