#!/bin/bash
# Sixth jobs (check the ETS-cut constants), simulated copy (spec steps-3-6 §1.7).
export PATH=@SIM_BIN@:$PATH
@PY@ @SIMTOOL@ hook genJob.sh check_ETScut_CalibConst/genJob.sh || exit $?
ntuplePath=@TOPUP_ROOT@/round${ROUND_NUMBER}/DataValid/hist
pwdir=$(pwd)
for file in `/bin/ls ${ntuplePath}/hist*.root`
do
    runNo=${file:$((${#file}-10)):5}
    echo ${runNo}
    echo "${pwdir}/a.out ${ntuplePath} ${runNo} " > ETScut_check_${runNo}.txt
    chmod +x ETScut_check_${runNo}.txt
    hep_sub -g offlinerun ETScut_check_${runNo}.txt
done
echo "DONE"
