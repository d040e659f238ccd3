#!/usr/bin/python3
"""Entry point of every tool of the simulated site: `simtool.py <command> [args...]`.

Called by the small bash wrappers in the tree (boss.condor, hep_sub, hep_q, hep_rm, hadd,
root, convert, the a.out programs, genInsertCmd.sh) and by the scripts' first line
(`hook`). Standard library only: the site user cannot read the project's virtualenv.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: simtool.py <command> [args...]\n")
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "hook":
        from simcommon import hook

        names = [a for a in args if not a.startswith("--")]
        gets = [a.split("=", 1)[1] for a in args if a.startswith("--get=")]
        once = [a.split("=", 1)[1] for a in args if a.startswith("--once=")]
        return hook(names, gets, once)
    if cmd == "get":
        from simcommon import faults

        value = faults().get(args[0]) if args else None
        print("" if value is None else value)
        return 0
    if cmd == "schedd":
        from simbatch import schedd

        return schedd()
    if cmd == "hep_q":
        from simbatch import hep_q

        return hep_q(args)
    if cmd == "hep_rm":
        from simbatch import hep_rm

        return hep_rm(args)
    if cmd == "aout":
        from simjobs import aout

        return aout(args[0], args[1:])
    if cmd == "root":
        from simjobs import root_cmd

        return root_cmd(args)
    if cmd == "convert":
        from simimg import convert

        return convert(args)
    if cmd in ("duration", "ccompare", "offline_const", "check", "geninsert"):
        import simdb

        return getattr(simdb, cmd)(args)
    sys.stderr.write(f"simtool.py: unknown command {cmd}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
