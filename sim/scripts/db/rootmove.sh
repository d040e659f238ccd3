#!/bin/bash
# rootmove.sh: move the constant files into the calibration-constant area (AFS).
# Like `mv`, it fails when nothing matches (a second run has nothing left to move).
@PY@ @SIMTOOL@ hook rootmove.sh @HOOK@ || exit $?
mv @PATTERN@ @TARGET@/
