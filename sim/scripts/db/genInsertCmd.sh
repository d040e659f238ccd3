#!/bin/bash
# genInsertCmd.sh -runfrom <F> -runto <T> -sub_switch <0|1> (simulated site).
# 0: print the inserts planned for the constant files of this directory in [F, T].
# 1: perform them: one JSON line per insert in the simulated DB ledger.
exec @PY@ @SIMTOOL@ geninsert @KIND@ @BOSS@ @ROUND@ "$@"
