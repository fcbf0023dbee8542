"""A test process that dies without any teardown (like a killed xdist worker)."""

import os


def test_dies(betterpg_branch):
    with open(os.environ["BPGPY_RECORD"], "a") as f:
        f.write(betterpg_branch.name + "\n")
    os._exit(3)
