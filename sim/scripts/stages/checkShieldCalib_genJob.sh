#!/bin/bash
# Fourth jobs (check the shield calibration), simulated copy (spec steps-3-6 §1.7).
export PATH=@SIM_BIN@:$PATH
@PY@ @SIMTOOL@ hook genJob.sh checkShieldCalib/genJob.sh || exit $?
ntuplePath=@TOPUP_ROOT@/round${ROUND_NUMBER}/DataValid/hist
pwdir=$(pwd)
n=0
for file in `/bin/ls ${ntuplePath}/hist*.root`
do
    runNo=${file:$((${#file}-10)):5}
    echo "${pwdir}/a.out ${ntuplePath} ${runNo} " > run_${runNo}_4.txt
    chmod +x run_${runNo}_4.txt
    hep_sub -g offlinerun run_${runNo}_4.txt
    n=$((n+1))
done
echo "Total = ${n} files"
echo "DONE"
