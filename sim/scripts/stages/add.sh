#!/bin/bash
# add.sh (doc3): append every run's shield windows to the cumulative window.dat.
@PY@ @SIMTOOL@ hook add.sh || exit $?
cat shield_run* >> window.dat
