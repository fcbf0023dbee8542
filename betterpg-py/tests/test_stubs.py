"""The hand-written stubs (_internal.pyi) match the built module."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import betterpg
from betterpg import _internal

STUB = Path(betterpg.__file__).with_name("_internal.pyi")


def stub_classes() -> Dict[str, ast.ClassDef]:
    tree = ast.parse(STUB.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def stub_members(cls: ast.ClassDef) -> Set[str]:
    out = set()
    for n in cls.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.add(n.name)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            out.add(n.target.id)
    return out


def public(obj: type) -> Set[str]:
    own = set()
    for klass in obj.__mro__:
        if klass.__module__ in ("builtins",):
            continue
        own |= {k for k in vars(klass) if not k.startswith("_")}
    return own


def test_py_typed_and_stub_ship_with_the_package():
    assert Path(betterpg.__file__).with_name("py.typed").exists()
    assert STUB.exists()


def test_every_runtime_class_is_stubbed_and_back():
    stubs = stub_classes()
    runtime = {k for k, v in vars(_internal).items() if isinstance(v, type)}
    assert set(stubs) == runtime


def test_members_match():
    stubs = stub_classes()
    for name in [
        "BranchManager",
        "Info",
        "Branch",
        "RewindReport",
        "StepTiming",
        "PoolUsage",
        "Status",
        "GcItem",
        "GcReport",
        "DoctorReport",
        "LogFollower",
    ]:
        cls = getattr(_internal, name)
        declared = stub_members(stubs[name])
        # Inherited members are declared on the base class in the stub.
        for base in stubs[name].bases:
            if isinstance(base, ast.Name) and base.id in stubs:
                declared |= stub_members(stubs[base.id])
        missing = public(cls) - declared
        extra = {m for m in declared if not m.startswith("_")} - public(cls)
        assert not missing, f"{name}: not in the stub: {sorted(missing)}"
        assert not extra, f"{name}: in the stub only: {sorted(extra)}"
        for dunder in ["__enter__", "__exit__"]:
            if dunder in declared:
                assert hasattr(cls, dunder)


def test_exception_bases_match():
    stubs = stub_classes()
    for cls in _internal.ERROR_CLASSES.values():
        node = stubs[cls.__name__]
        bases: List[str] = [b.id for b in node.bases if isinstance(b, ast.Name)]
        assert [b.__name__ for b in cls.__bases__] == bases, cls


def test_module_level_names_are_stubbed():
    tree = ast.parse(STUB.read_text())
    declared = {
        n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    declared |= set(stub_classes())
    runtime = {k for k in vars(_internal) if not k.startswith("_") or k == "__version__"}
    assert runtime <= declared | {"StrPath"}, sorted(runtime - declared)
