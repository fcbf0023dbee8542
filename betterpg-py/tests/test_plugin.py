"""The pytest plugin, used by real test suites run as subprocesses.

Suites: examples/python (the documented example) and tests/suites/* (records,
deliberate failures, a crashing process, no psycopg). After every run no
branch made by the plugin may be left in the home, and the source must be
untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import betterpg
import pytest
from betterpg import pytest_plugin as plugin
from helpers import (
    EXAMPLES,
    SOURCE,
    SOURCE_ROWS,
    SUITES,
    plugin_branches,
    rows,
    run_pytest,
    unique,
)


def opts(env) -> List[str]:
    return ["--betterpg-home", str(env.path), "--betterpg-source", SOURCE]


def outcome(out: str) -> dict:
    """{'passed': n, 'failed': n, 'error': n, ...} from pytest's summary line."""
    last = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    assert last, out
    return {k.rstrip("s"): int(n) for n, k in re.findall(r"(\d+) (\w+)", last[-1])}


def assert_clean(manager) -> None:
    assert plugin_branches(manager) == [], "plugin branches left behind"
    url = manager.url(SOURCE)
    assert rows(url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
    assert rows(url, "SELECT count(*) FROM items WHERE name LIKE 'test:%%'") == [(0,)]


def read_records(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- the example suite


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_example_suite(env, manager, xdist):
    r = run_pytest([*xdist, *opts(env), "-v"], cwd=EXAMPLES)
    assert r.returncode == 0, r.stdout + r.stderr
    res = outcome(r.stdout)
    assert res.get("passed", 0) >= 15 and not res.get("failed") and not res.get("error"), res
    assert f"betterpg: home {env.path}, source {SOURCE}, pool of 2 ready branches" in r.stdout
    if xdist:
        assert "[gw0]" in r.stdout and "[gw1]" in r.stdout, r.stdout
    assert_clean(manager)


# ---------------------------------------------------------------- isolation and names


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_every_test_gets_its_own_branch(env, manager, tmp_path, xdist):
    record = tmp_path / "records.jsonl"
    r = run_pytest([*xdist, *opts(env)], cwd=SUITES / "records", env_extra={"BPGPY_RECORD": str(record)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert outcome(r.stdout)["passed"] == 12, r.stdout
    recs = read_records(record)
    assert len(recs) == 12
    # Each test saw only its own write (the suite checks it). Pooled
    # branches are recycled, so a name may come back, but never to two
    # tests at once: a name comes back only after the test that had it.
    names = [x["name"] for x in recs]
    if not xdist:
        assert all(names[i] != names[i + 1] for i in range(11)), names
    for x in recs:
        m = plugin.NAME_RE.match(x["name"])
        assert m, x["name"]
        assert int(m["pid"]) == x["pid"]
        assert m["worker"] == x["worker"]
        assert x["parent"] == SOURCE
        assert x["mode"] == "application-consistent"
    workers = {x["worker"] for x in recs}
    if xdist:
        assert workers == {"gw0", "gw1"}
        # One random suffix per process, distinct between the workers.
        per_worker = {x["worker"]: plugin.NAME_RE.match(x["name"])["rand"] for x in recs}
        assert len(set(per_worker.values())) == 2
    else:
        assert workers == {"main"}
    assert_clean(manager)


@pytest.mark.parametrize("mode", ["background", "sync"])
def test_destroy_modes(env, manager, tmp_path, mode):
    """By default a finished test's branch is destroyed in the background
    (never more than MAX_PENDING_DESTROYS waiting); --betterpg-sync-destroy
    destroys it before the next test starts. Either way nothing is left.
    (Without the pool: its ready branches would be among the others.)"""
    record = tmp_path / "records.jsonl"
    extra = ["--betterpg-pool-size=0"]
    extra += ["--betterpg-sync-destroy"] if mode == "sync" else []
    r = run_pytest([*opts(env), *extra], cwd=SUITES / "records", env_extra={"BPGPY_RECORD": str(record)})
    assert r.returncode == 0, r.stdout + r.stderr
    recs = read_records(record)
    assert len(recs) == 12
    waiting = [len(x["others"]) for x in recs]
    if mode == "sync":
        assert waiting == [0] * 12, waiting
    else:
        assert max(waiting) <= plugin.MAX_PENDING_DESTROYS, waiting
        # Every earlier branch still around is one this process made earlier.
        earlier = {x["name"] for x in recs}
        assert all(set(x["others"]) <= earlier for x in recs), recs
    assert_clean(manager)


def test_configuration_from_ini_and_env(env, manager, tmp_path):
    record = tmp_path / "r.jsonl"
    suite = SUITES / "records"
    # ini values (-o) and the mode
    r = run_pytest(
        [
            "-o",
            f"betterpg_home={env.path}",
            "-o",
            f"betterpg_source={SOURCE}",
            "-o",
            "betterpg_mode=crash-consistent",
            "-k",
            "test_private[0] or test_private[1]",
        ],
        cwd=suite,
        env_extra={"BPGPY_RECORD": str(record)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert {x["mode"] for x in read_records(record)} == {"crash-consistent"}
    assert {x["quota"] for x in read_records(record)} == {"0"}  # no quota unless asked
    # BPG_HOME from the environment, --betterpg-mode and --betterpg-quota on the command line
    record.unlink()
    r = run_pytest(
        [
            "--betterpg-source",
            SOURCE,
            "--betterpg-mode",
            "crash-consistent",
            "--betterpg-quota",
            "200M",
            "-k",
            "test_private[2]",
        ],
        cwd=suite,
        env_extra={"BPGPY_RECORD": str(record), "BPG_HOME": str(env.path)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(x["mode"], x["quota"]) for x in read_records(record)] == [("crash-consistent", str(200 << 20))]
    # the deprecated --betterpg-fast still works, and says it is deprecated
    record.unlink()
    r = run_pytest(
        [*opts(env), "--betterpg-fast", "-k", "test_private[4]"],
        cwd=suite,
        env_extra={"BPGPY_RECORD": str(record)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--betterpg-fast / betterpg_fast are deprecated" in r.stdout, r.stdout
    assert [x["mode"] for x in read_records(record)] == ["crash-consistent"]
    # an unknown mode (ini values have no choices) fails before any branch
    record.unlink()
    r = run_pytest(
        [*opts(env), "-o", "betterpg_mode=fast", "-k", "test_private[5]"],
        cwd=suite,
        env_extra={"BPGPY_RECORD": str(record)},
    )
    assert r.returncode != 0, r.stdout + r.stderr
    assert "unknown mode 'fast'" in r.stdout + r.stderr, r.stdout + r.stderr
    assert not record.exists() or read_records(record) == []
    # the ini value
    record.unlink(missing_ok=True)
    r = run_pytest(
        [*opts(env), "-o", "betterpg_quota=150M", "-k", "test_private[3]"],
        cwd=suite,
        env_extra={"BPGPY_RECORD": str(record)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x["quota"] for x in read_records(record)] == [str(150 << 20)]
    assert_clean(manager)


# ---------------------------------------------------------------- the warm pool


@pytest.mark.parametrize("size", [1, 2, 3])
def test_pool_hands_over_ready_branches(env, manager, tmp_path, size):
    """The branches the next tests get were made, and ready, while an
    earlier test ran: the fixture hands over a pooled branch."""
    record = tmp_path / "records.jsonl"
    r = run_pytest(
        [f"--betterpg-home={env.path}", f"--betterpg-source={SOURCE}", f"--betterpg-pool-size={size}"],
        cwd=SUITES / "pool",
        env_extra={"BPGPY_RECORD": str(record), "BPGPY_POOL_SIZE": str(size)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"pool of {size} ready branches" in r.stdout, r.stdout
    recs = read_records(record)
    assert [x["test"] for x in recs] == ["fill", "take1", "take2", "take3", "take4"], recs
    fill, takes = recs[0], recs[1:]
    assert len(fill["ready"]) == size, fill
    # The pool is filled to its size and no further.
    assert sorted(fill["others"]) == fill["ready"], fill
    # The next `size` tests got exactly the branches that were ready.
    assert sorted(x["name"] for x in takes[:size]) == fill["ready"], recs
    # Then recycled ones: the fill test's branch, rewound, is the next
    # one handed out, and no name is held by two tests at once.
    names = [x["name"] for x in recs]
    assert names[size + 1] == fill["name"], recs
    assert all(names[i] != names[i + 1] for i in range(len(names) - 1)), names
    for x in recs:
        assert plugin.NAME_RE.match(x["name"]), x
        assert len(x["others"]) <= size, x
    assert_clean(manager)


@pytest.mark.parametrize(
    "size,xdist", [(0, []), (1, []), (3, []), (2, ["-n", "2"])], ids=["off", "1", "3", "xdist-2"]
)
def test_pool_bound(env, manager, tmp_path, size, xdist):
    """A process never has more live branches than the pool size plus the
    ones its running test holds: in every test, the process's other
    branches (pooled, being made, waiting for their destroy) number at most
    the pool size (without a pool: the destroys waiting). Each xdist worker
    has its own pool."""
    record = tmp_path / "records.jsonl"
    pool = f"--betterpg-pool-size={size}"
    r = run_pytest(
        [*xdist, f"--betterpg-home={env.path}", f"--betterpg-source={SOURCE}", pool],
        cwd=SUITES / "records",
        env_extra={"BPGPY_RECORD": str(record)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("no pool" if size == 0 else f"pool of {size} ready branches") in r.stdout, r.stdout
    recs = read_records(record)
    assert len(recs) == 12, recs
    if size == 0:
        assert len({x["name"] for x in recs}) == 12, recs
    else:
        # Recycled: at most the pool plus the branch each worker's running
        # test holds were ever made.
        workers = 2 if xdist else 1
        assert len({x["name"] for x in recs}) <= size * workers + workers, recs
    bound = size or plugin.MAX_PENDING_DESTROYS
    assert max(len(x["others"]) for x in recs) <= bound, [x["others"] for x in recs]
    if xdist:
        assert {x["worker"] for x in recs} == {"gw0", "gw1"}
    assert_clean(manager)


def run_recycle(env, tmp_path, *args: str, size: int = 2, **env_extra: str):
    """Run suites/recycle; returns (CompletedProcess, records)."""
    record = tmp_path / "recycle.jsonl"
    record.unlink(missing_ok=True)
    r = run_pytest(
        [f"--betterpg-home={env.path}", f"--betterpg-source={SOURCE}", f"--betterpg-pool-size={size}", *args],
        cwd=SUITES / "recycle",
        env_extra={"BPGPY_RECORD": str(record), "BPGPY_POOL_SIZE": str(size), **env_extra},
    )
    return r, (read_records(record) if record.exists() else [])


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_pool_recycles_branches(env, manager, tmp_path, xdist):
    """By default a pooled branch is rewound after its test and handed to a
    later one: the same names and ports come back, and each test sees none
    of the earlier tests' writes (the suite checks it: a table per test,
    a row in items). At most the pool plus each worker's running test's
    branch are ever made; everything is destroyed at the end."""
    r, recs = run_recycle(env, tmp_path, *xdist, BPGPY_TESTS="10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert outcome(r.stdout) == {"passed": 10}, r.stdout
    assert "pool of 2 ready branches, recycled by rewind" in r.stdout, r.stdout
    assert len(recs) == 10
    names = [x["name"] for x in recs]
    workers = {x["worker"] for x in recs}
    assert len(set(names)) < len(names), f"no branch was recycled: {names}"
    assert len(set(names)) <= (2 + 1) * len(workers), names
    # Same name, same port and URL (password) every time it comes back.
    first = {}
    for x in recs:
        assert plugin.NAME_RE.match(x["name"]), x
        assert first.setdefault(x["name"], (x["port"], x["url"])) == (x["port"], x["url"]), x
        # The bound: no more than the pool besides the running test's.
        assert len(x["others"]) <= 2, x
    if xdist:
        assert workers == {"gw0", "gw1"}, workers
        # A worker's branches are its own: never handed to the other.
        by_worker = {}
        for x in recs:
            assert by_worker.setdefault(x["name"], x["worker"]) == x["worker"], recs
    else:
        assert len(set(names)) <= 3, names
        assert all(names[i] != names[i + 1] for i in range(len(names) - 1)), names
    assert_clean(manager)
    assert manager.gc(dry_run=True).items == []


def test_pool_without_recycling_destroys_after_use(env, manager, tmp_path):
    """--betterpg-no-recycle (or betterpg_recycle = false): every test gets
    a branch no test had, made without a rewind point."""
    for args in (["--betterpg-no-recycle"], ["-o", "betterpg_recycle=false"]):
        r, recs = run_recycle(env, tmp_path, *args, BPGPY_TESTS="5", BPGPY_NO_RECYCLE="1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "pool of 2 ready branches, destroyed after use" in r.stdout, r.stdout
        names = [x["name"] for x in recs]
        assert len(names) == 5 and len(set(names)) == 5, names
        assert all(len(x["others"]) <= 2 for x in recs), recs
        assert_clean(manager)


def test_a_failed_rewind_destroys_the_branch_and_the_pool_makes_another(env, manager, tmp_path):
    """A test destroys its pooled branch itself: its rewind fails, the pool
    forgets it, makes a new branch in its place, and the session warns."""
    r, recs = run_recycle(env, tmp_path, BPGPY_TESTS="6", BPGPY_DESTROY_AT="1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert outcome(r.stdout) == {"passed": 6, "warning": 1}, r.stdout
    assert "1 pooled branch(es) could not be rewound" in r.stdout, r.stdout
    names = [x["name"] for x in recs]
    gone = names[1]
    assert gone not in names[2:], names
    # Three made at first (the pool and the running test's), one more for
    # the one lost.
    assert len(set(names)) <= 4, names
    assert_clean(manager)


def test_crashed_session_with_recycled_branches_is_swept(env, manager, tmp_path):
    """A process that dies holding a branch, with a recycled branch (an
    earlier test's, rewound) and another ready in its pool: the next
    session's sweep destroys all three by their names, rewind points
    included (gc finds nothing)."""
    crashed = tmp_path / "crashed.txt"
    r, recs = run_recycle(env, tmp_path, BPGPY_TESTS="3", BPGPY_CRASH_AT="1", BPGPY_CRASHED=str(crashed))
    assert r.returncode == 3, r.stdout + r.stderr
    leftovers = crashed.read_text().split()
    assert len(leftovers) == 3, leftovers
    assert recs[0]["name"] in leftovers, (recs, leftovers)  # recycled, not destroyed
    assert sorted(plugin_branches(manager)) == sorted(leftovers)
    assert all(manager.info(n).rewindable for n in leftovers)
    r = run_pytest(
        [*opts(env), "-k", "test_private[0]"],
        cwd=SUITES / "records",
        env_extra={"BPGPY_RECORD": str(tmp_path / "r.jsonl")},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "destroyed 3 leftover branch(es)" in r.stdout, r.stdout
    assert_clean(manager)
    assert manager.gc(dry_run=True).items == []


def test_pool_size_must_be_a_number(env, manager, tmp_path):
    for bad in ["-1", "two"]:
        r = run_pytest(
            [f"--betterpg-home={env.path}", f"--betterpg-source={SOURCE}", "-o", f"betterpg_pool_size={bad}"],
            cwd=SUITES / "records",
            env_extra={"BPGPY_RECORD": str(tmp_path / "r.jsonl")},
        )
        assert r.returncode != 0, r.stdout + r.stderr
        assert f"pool size must be a whole number >= 0 (0: no pool), not '{bad}'" in r.stdout, r.stdout
        assert not (tmp_path / "r.jsonl").exists()
    assert_clean(manager)


def test_crashed_session_with_a_full_pool_is_swept(env, manager, tmp_path):
    """A process that dies with its pool full leaves its pooled branches;
    they carry the plugin's names, so the next session's sweep destroys
    them all."""
    record = tmp_path / "crashed.txt"
    r = run_pytest(
        [*opts(env), "--betterpg-pool-size=2"],
        cwd=SUITES / "crash",
        env_extra={"BPGPY_RECORD": str(record), "BPGPY_WAIT_POOL": "2"},
    )
    assert r.returncode == 3, r.stdout + r.stderr
    leftovers = record.read_text().split()
    assert len(leftovers) == 3, leftovers  # the test's branch and two pooled ones
    assert sorted(plugin_branches(manager)) == sorted(leftovers)
    for name in leftovers:
        m = plugin.NAME_RE.match(name)
        assert m and not plugin.creator_alive(int(m["pid"]), m["start"]), name
    rec2 = tmp_path / "r.jsonl"
    r = run_pytest(
        [*opts(env), "-k", "test_private[0]"], cwd=SUITES / "records", env_extra={"BPGPY_RECORD": str(rec2)}
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "destroyed 3 leftover branch(es)" in r.stdout, r.stdout
    assert all(name in r.stdout for name in leftovers), r.stdout
    assert_clean(manager)


def test_crashed_session_leaves_branches_gc_destroys(env, manager, tmp_path):
    """Every branch the plugin makes is tied to its process (owner_pid):
    after a crash, ``gc`` (``bpg gc``, the daemon) finds and destroys the
    test's branch and the pooled ones without any further pytest run."""
    record = tmp_path / "crashed.txt"
    r = run_pytest(
        [*opts(env), "--betterpg-pool-size=2"],
        cwd=SUITES / "crash",
        env_extra={"BPGPY_RECORD": str(record), "BPGPY_WAIT_POOL": "2"},
    )
    assert r.returncode == 3, r.stdout + r.stderr
    leftovers = sorted(record.read_text().split())
    assert len(leftovers) == 3, leftovers
    for name in leftovers:
        m = plugin.NAME_RE.match(name)
        assert m, name
        assert manager.info(name).owner_pid == int(m["pid"]), name
    dry = manager.gc(dry_run=True)
    assert sorted(i.name for i in dry.items if i.what == "branch") == leftovers, dry.items
    assert sorted(plugin_branches(manager)) == leftovers  # a dry run changes nothing
    done = manager.gc()
    assert sorted(i.name for i in done.items if i.what == "branch") == leftovers, done.items
    assert all("owner process" in i.reason for i in done.items if i.what == "branch")
    assert_clean(manager)


# ---------------------------------------------------------------- masking

# A suite against a copy of production: it records what each of its
# branches (betterpg_branch, the factory, a module-scoped branch_fixture)
# holds.
MASKED_SUITE = """
import json, os

import psycopg
from betterpg.pytest_plugin import branch_fixture

shared = branch_fixture(scope="module")


def record(kind, branch):
    with psycopg.connect(branch.url) as c:
        rows = c.execute("SELECT email, name, phone, note FROM users ORDER BY id").fetchall()
    with open(os.environ["BPGPY_RECORD"], "a") as f:
        f.write(json.dumps({"kind": kind, "name": branch.name, "rows": rows}) + "\\n")


def test_branch(betterpg_branch):
    record("branch", betterpg_branch)


def test_factory(betterpg_branch_factory):
    record("factory", betterpg_branch_factory())


def test_shared(shared):
    record("shared", shared)
"""

PII_ROWS = 25

# Masking in two files: the second reads what the first wrote (order kept).
MASK_A = "UPDATE users SET email = 'user' || id || '@example.invalid', name = 'User ' || id;\n"
MASK_B = "-- after a.sql\nUPDATE users SET phone = NULL, note = email;\n"


def write_suite(dir: Path, ini: str = "") -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "pytest.ini").write_text("[pytest]\n" + ini)
    (dir / "test_masked.py").write_text(MASKED_SUITE)
    return dir


def assert_masked(recs: List[dict]) -> None:
    assert sorted(r["kind"] for r in recs) == ["branch", "factory", "shared"], recs
    # Pooled branches are recycled: a later test may get an earlier one's
    # branch, rewound to its rewind point, which was taken after masking.
    assert len({r["name"] for r in recs}) >= 2, recs
    for r in recs:
        assert len(r["rows"]) == PII_ROWS, r
        for i, (email, name, phone, note) in enumerate(r["rows"], start=1):
            assert (email, name, phone, note) == (
                f"user{i}@example.invalid",
                f"User {i}",
                None,
                f"user{i}@example.invalid",
            ), r
        assert "gmail" not in json.dumps(r) and "Okafor" not in json.dumps(r), r


@pytest.fixture
def pii_source(manager):
    """A source with personal data: users (email, name, phone)."""
    name = unique("pii")
    info = manager.create(name)
    rows(
        info.url,
        "CREATE TABLE users (id int PRIMARY KEY, email text, name text, phone text, note text); "
        "INSERT INTO users SELECT i, 'margaret.okafor' || i || '@gmail.com', 'Margaret Okafor ' || i, "
        f"'+44 7700 9' || lpad(i::text, 5, '0'), NULL FROM generate_series(1, {PII_ROWS}) i",
    )
    yield name
    try:
        manager.destroy(name, force=True)
    except betterpg.NotFoundError:
        pass


def source_untouched(manager, name: str) -> None:
    url = manager.url(name)
    assert rows(url, "SELECT count(*) FROM users WHERE email LIKE '%%@gmail.com' AND phone IS NOT NULL") == [
        (PII_ROWS,)
    ]


def test_mask_every_branch_of_the_suite(env, manager, tmp_path, pii_source):
    """--betterpg-mask (repeatable, in order), the betterpg_mask ini value
    (a directory, relative to the ini file) and an override of the
    betterpg_mask fixture: every branch the suite's fixtures make holds
    masked values only. All three come from the warm pool (the default
    pool size): pooled branches are masked too, and stay masked when
    recycled."""
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "a.sql").write_text(MASK_A)
    (masks / "b.sql").write_text(MASK_B)
    # Options with values as --opt=VALUE: a separate value would be taken
    # for a test path, and pytest would then miss the suite's ini file.
    base = [f"--betterpg-home={env.path}", f"--betterpg-source={pii_source}", "-v"]

    # Command line, two files, relative to where pytest starts.
    suite = write_suite(tmp_path / "cli")
    record = tmp_path / "cli.jsonl"
    r = run_pytest(
        [*base, f"--betterpg-mask={masks / 'a.sql'}", "--betterpg-mask=../masks/b.sql"],
        cwd=suite,
        env_extra={"BPGPY_RECORD": str(record)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert outcome(r.stdout) == {"passed": 3}, r.stdout
    assert f"masked with {masks / 'a.sql'}, {suite / '../masks/b.sql'}" in r.stdout, r.stdout
    assert_masked(read_records(record))

    # The ini value: a directory of *.sql in name order, relative to the ini.
    (tmp_path / "ini" / "mask.d").mkdir(parents=True)
    (tmp_path / "ini" / "mask.d" / "10-a.sql").write_text(MASK_A)
    (tmp_path / "ini" / "mask.d" / "20-b.sql").write_text(MASK_B)
    suite = write_suite(tmp_path / "ini", "betterpg_mask = mask.d\n")
    record = tmp_path / "ini.jsonl"
    r = run_pytest(base, cwd=suite, env_extra={"BPGPY_RECORD": str(record)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert outcome(r.stdout) == {"passed": 3}, r.stdout
    assert_masked(read_records(record))

    # A conftest.py overriding the betterpg_mask fixture.
    suite = write_suite(tmp_path / "fixture")
    (suite / "conftest.py").write_text(
        "import os, pytest\n\n"
        "@pytest.fixture(scope='session')\n"
        "def betterpg_mask():\n"
        "    return [os.environ['BPGPY_MASK_DIR']]\n"
    )
    record = tmp_path / "fixture.jsonl"
    r = run_pytest(
        base, cwd=suite, env_extra={"BPGPY_RECORD": str(record), "BPGPY_MASK_DIR": str(masks)}
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert_masked(read_records(record))

    source_untouched(manager, pii_source)
    assert plugin_branches(manager) == []


def test_a_failing_mask_errors_the_fixture_and_no_branch_is_made(env, manager, tmp_path, pii_source):
    """A masking statement that fails, or a mask file that is missing, errors
    every fixture that asked for a branch (and fails the test that called the
    factory): no test runs on an unmasked branch, and nothing is left in the
    home."""
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "10-a.sql").write_text(MASK_A)
    (masks / "20-bad.sql").write_text("-- a typo\n\nUPDATE users SET emial = NULL;\n")
    before = {i.name for i in manager.list()}
    for mask, expect in [
        (str(masks), ["MaskError", "20-bad.sql line 3", "emial"]),
        (str(tmp_path / "missing.sql"), ["missing.sql"]),
    ]:
        suite = write_suite(tmp_path / "suite")
        record = tmp_path / "r.jsonl"
        record.unlink(missing_ok=True)
        r = run_pytest(
            [f"--betterpg-home={env.path}", f"--betterpg-source={pii_source}", f"--betterpg-mask={mask}"],
            cwd=suite,
            env_extra={"BPGPY_RECORD": str(record)},
        )
        assert r.returncode == 1, r.stdout + r.stderr
        # The fixtures error; the factory, called in the test, fails it.
        assert outcome(r.stdout) == {"error": 2, "failed": 1}, r.stdout
        for text in expect:
            assert text in r.stdout, (text, r.stdout)
        assert not record.exists(), read_records(record)
        assert {i.name for i in manager.list()} == before
    source_untouched(manager, pii_source)


# ---------------------------------------------------------------- cleanup


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_failing_tests_leave_no_branch(env, manager, xdist):
    r = run_pytest([*xdist, *opts(env)], cwd=SUITES / "failing")
    assert r.returncode == 1, r.stdout + r.stderr
    res = outcome(r.stdout)
    assert (res.get("failed"), res.get("passed"), res.get("error")) == (2, 1, 1), r.stdout
    assert "deliberate failure" in r.stdout and "deliberate error" in r.stdout
    assert "NotFoundError" in r.stdout and "bpgpy-no-such-source" in r.stdout
    assert_clean(manager)


def test_crashed_session_is_swept_by_the_next(env, manager, tmp_path):
    record = tmp_path / "crashed.txt"
    r = run_pytest(
        [*opts(env), "--betterpg-pool-size=0"], cwd=SUITES / "crash", env_extra={"BPGPY_RECORD": str(record)}
    )
    assert r.returncode == 3, r.stdout + r.stderr
    (leftover,) = record.read_text().split()
    assert plugin_branches(manager) == [leftover], "the crash should have left its branch"
    m = plugin.NAME_RE.match(leftover)
    assert not plugin.creator_alive(int(m["pid"]), m["start"])

    # The next session sweeps it at start, and says so.
    rec2 = tmp_path / "r.jsonl"
    r = run_pytest(
        [*opts(env), "-k", "test_private[0]"], cwd=SUITES / "records", env_extra={"BPGPY_RECORD": str(rec2)}
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "destroyed 1 leftover branch(es)" in r.stdout and leftover in r.stdout, r.stdout
    assert_clean(manager)


def test_crashed_xdist_worker_is_swept(env, manager, tmp_path):
    record = tmp_path / "crashed.txt"
    r = run_pytest(["-n", "2", *opts(env)], cwd=SUITES / "crash", env_extra={"BPGPY_RECORD": str(record)})
    assert r.returncode != 0
    assert "crashed" in r.stdout.lower() or "died" in r.stdout.lower() or "worker" in r.stdout.lower(), (
        r.stdout
    )
    (leftover,) = record.read_text().split()
    assert re.match(r"pytest-\d+-[0-9a-z]+-gw[01]-", leftover)
    r = run_pytest(
        ["-n", "2", *opts(env), "-k", "test_private[0] or test_private[1]"],
        cwd=SUITES / "records",
        env_extra={"BPGPY_RECORD": str(tmp_path / "r.jsonl")},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert_clean(manager)


def test_sweep_rule(env, manager):
    """Only names of the plugin's pattern whose creator is dead are swept."""
    # A process that existed and is gone: its pid and start time.
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = plugin._base36(plugin.process_start_time(p.pid))
    p.communicate(b"")
    dead = f"pytest-{p.pid}-{start}-gw0-abc123-1"
    # This very process, alive.
    alive = plugin.new_branch_name()
    # Right pid, wrong start time: the pid was reused by another process.
    reused = (
        f"pytest-{os.getpid()}-{plugin._base36(plugin.process_start_time(os.getpid()) + 1)}-main-zzz999-1"
    )
    # Not the plugin's pattern at all.
    foreign = unique("pytestish")
    made = [dead, alive, reused, foreign]
    try:
        for n in made:
            manager.branch(SOURCE, n, mode="crash-consistent")
        child_of_dead = f"pytest-{p.pid}-{start}-gw0-abc123-2"
        manager.branch(dead, child_of_dead, mode="crash-consistent")
        swept = plugin.sweep(manager)
        assert sorted(swept) == sorted([dead, reused]), swept
        left = {i.name for i in manager.list()}
        assert alive in left and foreign in left
        assert not {dead, reused, child_of_dead} & left
        assert plugin.sweep(manager) == []
    finally:
        for n in made:
            try:
                manager.destroy(n, force=True)
            except betterpg.NotFoundError:
                pass
    assert_clean(manager)


def test_names_are_valid_and_unique():
    names = [plugin.new_branch_name() for _ in range(50)]
    assert len(set(names)) == 50
    for n in names:
        # The core's rules: <= 63 chars of [A-Za-z0-9_-], starting with a letter or digit.
        assert len(n) <= 63 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", n)
        m = plugin.NAME_RE.match(n)
        assert m and int(m["pid"]) == os.getpid() and plugin.creator_alive(int(m["pid"]), m["start"])


# ---------------------------------------------------------------- missing configuration


def test_missing_home_fails_with_a_message(env):
    r = run_pytest(
        ["--betterpg-source", SOURCE], cwd=SUITES / "records", env_extra={"BPGPY_RECORD": os.devnull}
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "betterpg: no home configured" in r.stdout
    assert outcome(r.stdout).get("error") == 12


def test_missing_source_fails_with_a_message(env, manager):
    r = run_pytest(
        ["--betterpg-home", str(env.path), "-k", "test_private[0]"],
        cwd=SUITES / "records",
        env_extra={"BPGPY_RECORD": os.devnull},
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "betterpg: no source database configured" in r.stdout
    assert_clean(manager)


def test_missing_psycopg_fails_with_a_message(env, manager):
    r = run_pytest(opts(env), cwd=SUITES / "nopsycopg")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "betterpg_conn needs psycopg 3" in r.stdout
    assert_clean(manager)


def test_plugin_is_registered_by_entry_point():
    from importlib.metadata import entry_points

    eps = entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    assert any(ep.name == "betterpg" and ep.value == "betterpg.pytest_plugin" for ep in group)
    r = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True)
    assert "--betterpg-home" in r.stdout and "betterpg_source" in r.stdout


def test_entry_point_gathers_every_hook_and_fixture_of_the_parts():
    """pytest loads only betterpg.pytest_plugin: every hook and fixture
    defined in the parts (betterpg._plugin.*) must be reachable from it."""
    import inspect

    from _pytest.fixtures import getfixturemarker
    from betterpg._plugin import fixtures, identity, janitor, options, pool

    parts = [options, identity, janitor, pool, fixtures]
    wanted = {}
    for mod in parts:
        for name, obj in vars(mod).items():
            if getfixturemarker(obj) is not None and mod is fixtures:
                wanted[name] = obj
            elif name.startswith("pytest_") and inspect.isfunction(obj) and obj.__module__ == mod.__name__:
                wanted[name] = obj
    assert {"pytest_addoption", "pytest_configure", "pytest_report_header"} <= set(wanted)
    assert {"betterpg_manager", "betterpg_branch", "betterpg_conn", "_betterpg_session"} <= set(wanted)
    missing = sorted(n for n, obj in wanted.items() if getattr(plugin, n, None) is not obj)
    assert not missing, f"in betterpg._plugin but not in betterpg.pytest_plugin: {missing}"
    # Each part imports only the parts before it (options, identity, janitor, fixtures).
    for i, mod in enumerate(parts):
        src = inspect.getsource(mod)
        for later in parts[i + 1 :]:
            assert f"from {later.__name__} import" not in src, (mod.__name__, later.__name__)
