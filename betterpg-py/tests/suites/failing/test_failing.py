"""Tests that fail in every way; none may leave a branch behind."""

import pytest


def test_assertion_fails(betterpg_conn):
    betterpg_conn.execute("INSERT INTO items (name) VALUES ('failing')")
    betterpg_conn.commit()
    raise AssertionError("deliberate failure")


def test_raises_with_several_branches(betterpg_branch_factory):
    a = betterpg_branch_factory()
    betterpg_branch_factory(a.name)  # a branch of the branch
    betterpg_branch_factory()
    raise RuntimeError("deliberate error")


@pytest.mark.betterpg_source("bpgpy-no-such-source")
def test_setup_fails(betterpg_branch):
    raise AssertionError("not reached: the fixture fails")


def test_passes(betterpg_branch):
    assert betterpg_branch.status == "running"
