#!/bin/bash
# cp_3files.sh: bring interval.txt, window.dat and ets_cut.txt next to the OfflineEvtFilter tools.
@PY@ @SIMTOOL@ hook cp_3files.sh || exit $?
cp @BASE@/InjSigTimeCal/interval.txt . && cp @BASE@/Determining_50Hz_cut/search_peak/window.dat . && cp @BASE@/Determining_ETS_cut/ETS_cut/ets_cut.txt .
