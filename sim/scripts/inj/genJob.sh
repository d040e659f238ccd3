#!/bin/bash
# First-pass job generator of InjSigTimeCal (simulated copy, spec steps-0-2 §6.1).
# Usage: ./genJob.sh <date>   Data: DATA/round18/<date> (the round is fixed in this copy).
export PATH=@SIM_BIN@:$PATH
@PY@ @SIMTOOL@ hook genJob.sh InjSigTimeCal/genJob.sh || exit $?
if [ $# -lt 1 ]; then
    echo "Usage: ./genJob.sh <date>   e.g. ./genJob.sh 250520"
    exit 1
fi
date=$1
dataPath=@DATA_ROOT@/@ROUND@/${date}
temp=$(pwd)/temp.txt
if [ -d ${date} ]; then
    echo "ERROR: ${date} exists"
    exit 1
fi
mkdir ${date}
cd ${date}
lastRun=""
for file in `/bin/ls ${dataPath}/*run*`
do
    name=`basename ${file}`
    runNo=${name:6:5}
    if [ "${runNo}" != "${lastRun}" ]; then
        echo ${runNo}
        inputs=""
        for raw in `/bin/ls ${dataPath}/*${runNo}*raw`
        do
            if [ -z "${inputs}" ]; then
                inputs="\"${raw}\""
            else
                inputs="${inputs}\n,\"${raw}\""
            fi
        done
        sed -e "s/RUNNO/${runNo}/g" ${temp} | awk -v files="${inputs}" '/INPUTFILES/ {print files; next} {print}' > rec${runNo}_1.txt
        lastRun=${runNo}
    fi
done
n=0
for job in rec*.txt
do
    echo ${job}
    chmod +x ${job}
    boss.condor -g offlinerun ${job}
    n=$((n+1))
done
echo "Total = ${n} files"
echo "DONE"
