#!/bin/bash
# clean_interval.sh of the simulated site. The real script is not public; this one sorts
# interval.txt numerically by run and drops repeated lines, in place:
#     sort -n -k1,1 interval.txt | uniq > interval.txt.tmp && mv interval.txt.tmp interval.txt
# Its exit status can be forced with the fault script_exit {"clean_interval.sh": N}.
@PY@ @SIMTOOL@ hook clean_interval.sh || exit $?
sort -n -k1,1 interval.txt | uniq > interval.txt.tmp && mv interval.txt.tmp interval.txt
