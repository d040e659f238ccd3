#!/bin/bash
# copy.sh: copy the generated InjSigInterval constants to const_runForm_runTo/.
@PY@ @SIMTOOL@ hook copy.sh genConst/copy.sh || exit $?
cp InjSigInterval_*.root const_runForm_runTo/
