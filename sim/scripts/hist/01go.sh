#!/bin/bash
# Draw one check plot per merged ntuple, in the background (simulated copy, spec
# steps-0-2 §9.3). The legacy `sleep 1` per run is the fault pause_seconds (default 0).
export PATH=@SIM_BIN@:$PATH
pause=$(@PY@ @SIMTOOL@ hook 01go.sh --get=pause_seconds) || exit $?
for file in `ls *root`
do
    run=${file:4:5}
    root -q -b -l "drawcheck.c(${run})" &
    sleep ${pause}
    echo "  Run  ${run} "
done
