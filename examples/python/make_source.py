"""Make the source database the example tests branch from.

Creates the database ``app`` in a betterpg home, with a table
``items (id serial PRIMARY KEY, name text NOT NULL)`` holding 100 rows
(``item-1`` ... ``item-100``): what ``tests/`` expects. With ``--pool-file``
it first initialises the home on a new file-backed ZFS pool.

    python make_source.py HOME [--pool-file FILE --size SIZE --pool NAME --ports FIRST-LAST]
    python make_source.py HOME --destroy     # destroy app and its branches

Run it as root (betterpg makes ZFS datasets and runs PostgreSQL as the
``postgres`` user), in a Python with betterpg and psycopg 3 installed.
"""

from __future__ import annotations

import argparse
import sys

import betterpg

SOURCE = "app"
ROWS = 100


def main(argv: list) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("home", help="the betterpg home")
    p.add_argument("--pool-file", help="initialise the home on a new pool in this (sparse) file")
    p.add_argument("--size", default="1G", help="size of the pool file (default 1G)")
    p.add_argument("--pool", default="bpgex", help="name of the new pool (default bpgex)")
    p.add_argument("--ports", default="55800-55899", help="ports of the new home (default 55800-55899)")
    p.add_argument("--destroy", action="store_true", help=f"destroy {SOURCE} and its branches instead")
    args = p.parse_args(argv)

    if args.destroy:
        betterpg.BranchManager(args.home).destroy(SOURCE, force=True)
        print(f"destroyed {SOURCE} and its branches")
        return 0

    if args.pool_file:
        first, _, last = args.ports.partition("-")
        mgr = betterpg.BranchManager.init(
            args.home,
            pool_file=args.pool_file,
            size=args.size,
            pool=args.pool,
            port_range=(int(first), int(last)),
        )
        print(f"initialised {mgr.home} on pool {args.pool} ({args.pool_file}, {args.size})")
    else:
        mgr = betterpg.BranchManager(args.home)

    import psycopg

    info = mgr.create(SOURCE)
    with psycopg.connect(info.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            "INSERT INTO items (name) SELECT 'item-' || g FROM generate_series(1, %s) g",
            (ROWS,),
        )
    print(f"created {SOURCE} (port {info.port}) with {ROWS} rows in items")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
