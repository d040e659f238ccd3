#!/bin/bash
# Second-pass job generator of DataValid (simulated copy, spec steps-0-2 §6.2).
# Usage: ./genJob.sh <date>   Needs ROUND_NUMBER (source ~/w720 first).
export PATH=@SIM_BIN@:$PATH
params=$(@PY@ @SIMTOOL@ hook genJob.sh DataValid/genJob.sh --get=pause_seconds --get=array_jobs) || exit $?
pause=$(printf '%s\n' "$params" | tail -n 2 | head -n 1)
array=$(printf '%s\n' "$params" | tail -n 1)
if [ $# -lt 1 ]; then
    echo "Usage: ./genJob.sh <date>   e.g. ./genJob.sh 250520"
    exit 1
fi
date=$1
dataPath=@DATA_ROOT@/round${ROUND_NUMBER}/${date}
temp=$(pwd)/temp.txt
intervalFile=$(pwd)/InjSigTimeCal/interval.txt
if [ -d ${date} ]; then
    echo "ERROR: ${date} exists"
    exit 1
fi
mkdir ${date}
cd ${date}
touch mergeHist.sh
chmod +x mergeHist.sh
n=0
for file in `/bin/ls ${dataPath}/*.raw`
do
    name=`basename ${file}`
    runNo=${name:6:5}
    if [ ! -d ${runNo} ]; then
        mkdir ${runNo}
        totalnum=`/bin/ls ${dataPath}/*_00${runNo}_* | wc -l`
        jobID=0
        echo "hadd  hist${runNo}.root  ${runNo}/*root  " >> mergeHist.sh
    fi
    cd ${runNo}
    job=rec${runNo}_${jobID}
    cp ${temp} ${job}
    while read irun ival rest
    do
        if [ "${irun}" == "${runNo}" ]; then
            if [ "${ival}" == "15000000" ]; then
                ival=60
            fi
            sed -i "s/INTERVAL/${ival}/g" ${job}
        fi
    done < ${intervalFile}
    sed -i -e "s/RUNNO_ID/${runNo}_${jobID}/g" -e "s/RUNNO/${runNo}/g" -e "s#INPUTFILE#\"${file}\"#g" ${job}
    chmod +x ${job}
    jobID=$((jobID+1))
    n=$((n+1))
    echo "${date} Run ${runNo} ${totalnum} ${jobID}"
    if [ ${jobID} -eq ${totalnum} ]; then
        if [ "${array}" = "True" ] && [ ${totalnum} -gt 1 ]; then
            # the real generator: one array per run (spec steps-0-2 §6.2)
            boss.condor -g offlinerun -n ${totalnum} rec${runNo}_'%{ProcId}'
        else
            for ((i=0; i<totalnum; i++))
            do
                boss.condor -g offlinerun rec${runNo}_${i}
            done
        fi
        sleep ${pause}
    fi
    cd ..
done
echo " Total = ${n} files"
echo " sleep 2 " >> mergeHist.sh
echo " rm */hist*_*.root -f " >> mergeHist.sh
echo " du -sh * " >> mergeHist.sh
echo " ls */*core* " >> mergeHist.sh
echo " mv  hist*.root ../hist " >> mergeHist.sh
echo "DONE"
