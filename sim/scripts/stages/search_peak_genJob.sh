#!/bin/bash
# Third jobs (search 50 Hz peaks), simulated copy (spec steps-3-6 §1.7): one job file
# run_<run>_3.txt per BASE/hist/hist*.root, appended (>>), submitted with hep_sub.
export PATH=@SIM_BIN@:$PATH
@PY@ @SIMTOOL@ hook genJob.sh search_peak/genJob.sh || exit $?
ntuplePath=@TOPUP_ROOT@/round${ROUND_NUMBER}/DataValid/hist/
pwdir=$(pwd)
n=0
for file in `/bin/ls ${ntuplePath}/hist*.root`
do
    runNo=${file:$((${#file}-10)):5}
    echo ${runNo}
    echo "${pwdir}/a.out ${ntuplePath} ${runNo} " >> run_${runNo}_3.txt
    chmod +x run_${runNo}_3.txt
    hep_sub -g offlinerun run_${runNo}_3.txt
    n=$((n+1))
done
echo "Total = ${n} files"
echo "DONE"
