#!/bin/bash
# reset_root.sh of checkDBAlg: drop the ROOT files a previous check left behind.
@PY@ @SIMTOOL@ hook reset_root.sh || exit $?
rm -f *.root
echo "checkDBAlg root files reset"
