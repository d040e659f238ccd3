#!/bin/bash
# add_shield.sh (doc5): append every run's ETS-cut windows to the cumulative ets_cut.txt.
@PY@ @SIMTOOL@ hook add_shield.sh || exit $?
cat shield*.txt >> ets_cut.txt
