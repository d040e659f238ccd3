#!/bin/bash
# @NAME@ of the simulated site (see sim/bin/simdb.py).
exec @PY@ @SIMTOOL@ @TOOL@ "$@"
