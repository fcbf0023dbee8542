"""A test process that dies without any teardown (like a killed xdist worker).

It records its branch's name; with $BPGPY_WAIT_POOL=N it first waits until
N ready pooled branches of this process exist and records theirs too.
"""

import os
import time


def test_dies(betterpg_manager, betterpg_branch):
    names = [betterpg_branch.name]
    want = int(os.environ.get("BPGPY_WAIT_POOL", "0"))
    if want:
        prefix = f"pytest-{os.getpid()}-"
        deadline = time.monotonic() + 300
        while True:
            pooled = [
                i.name
                for i in betterpg_manager.list()
                if i.name.startswith(prefix) and i.name != betterpg_branch.name and i.state == "ready"
            ]
            if len(pooled) >= want or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        names += pooled
    with open(os.environ["BPGPY_RECORD"], "a") as f:
        f.write("\n".join(names) + "\n")
    os._exit(3)
