#!/bin/bash
# Fifth jobs (ETS cut), simulated copy (spec steps-3-6 §1.7). The legacy `sleep 1` per run
# is the fault pause_seconds (default 0).
export PATH=@SIM_BIN@:$PATH
pause=$(@PY@ @SIMTOOL@ hook genJob.sh ETS_cut/genJob.sh --get=pause_seconds) || exit $?
ntuplePath=@TOPUP_ROOT@/round${ROUND_NUMBER}/DataValid/hist
pwdir=$(pwd)
n=0
for file in `/bin/ls ${ntuplePath}/hist*.root`
do
    runNo=${file:$((${#file}-10)):5}
    echo ${runNo}
    echo "${pwdir}/a.out ${ntuplePath} ${runNo} " > plot_ETS_${runNo}.txt
    chmod 755 plot_ETS_${runNo}.txt
    hep_sub -g offlinerun plot_ETS_${runNo}.txt
    sleep ${pause}
    n=$((n+1))
done
echo "Total = ${n} files"
echo "DONE"
