#!/bin/bash
# reset.sh (simulated copy of the script quoted in step7_run_reset_script.py, spec
# steps-7-8 §1.2): archive the cumulative files, move the per-run files of steps 1-6 into
# tmp/ directories. No `set -e`: every line runs whatever happened before, and the final
# echo makes the exit status 0.
@PY@ @SIMTOOL@ hook reset.sh || exit $?
date=$(date +%y%m%d)
ntuplePath=$(pwd)

cp interval.txt InjSigIntervalCal/${date}
#mv calibConst/*.root period

cd Interval_plot
#rm merged.pdf -f
mv *.png tmp/

cd ../../hist
mv hist*.root tmp/
rm *.png

cd ../plot
mv run* tmp
mv *.png tmp
#mv output* tmp

cd ../Determining_50Hz_cut/search_peak
mv run* tmp/
mv shield_run* raw_shield
cp window.dat time_final/${date}
#cp log ../ShieldConst/${date}

cd ../checkShieldCalib
mv run* tmp/
mv *pdf tmp/
#mv before_cut/* tmp
#mv after_cut/* tmp
#mv check_detail/* backup/png_backup/
#mv cut_detail/* backup/png_backup/

cd ../../Determining_ETS_cut/ETS_cut
mv plot_ETS_* tmp
mv run* tmp
mv shield* tmp
cp ets_cut.txt ../ETScutCalibConst/${date}

cd ../check_ETScut_CalibConst
mv ETScut_check_* tmp
mv run*.png tmp
mv run*.root tmp
#mv run*.root period

cd ${ntuplePath}
echo "done"
