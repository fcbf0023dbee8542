"""The parts of betterpg's pytest plugin, one module per concern.

pytest loads :mod:`betterpg.pytest_plugin` (the ``pytest11`` entry point),
which gathers the hooks and fixtures defined here:

:mod:`~betterpg._plugin.options`
    command-line options, ini values and where each setting comes from;
:mod:`~betterpg._plugin.identity`
    the branch names the plugin makes and whether the process that made one
    still runs;
:mod:`~betterpg._plugin.janitor`
    what the plugin made and has not destroyed yet: branches made with the
    session's defaults, destroyed in the background, and the sweep of dead
    sessions' leftovers;
:mod:`~betterpg._plugin.pool`
    the warm pool: branches of the default source made in the background
    before a test asks for one;
:mod:`~betterpg._plugin.fixtures`
    the fixtures, :class:`~betterpg._plugin.fixtures.BranchFactory` and the
    :func:`~betterpg._plugin.fixtures.branch_fixture` factory.

Each module imports only those above it in this list.
"""
