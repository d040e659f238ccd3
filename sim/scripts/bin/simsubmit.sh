# Submission logic shared by boss.condor and hep_sub (sourced; KIND is set by the caller).
# Pure bash so that a submission costs a few milliseconds: it records the job under
# .sim/batch (job dir, queue entry, submissions.log line), prints the cluster line, and makes
# sure this user's scheduler (simtool.py schedd) runs; the scheduler runs the job.
BATCH=@SIM_ROOT@/.sim/batch
group=offlinerun
count=1
jobfile=""
usage() {
    if [ "$KIND" = "boss.condor" ]; then
        echo "Usage: boss.condor -g <group> [-n N] <jobOptions file>" >&2
    else
        echo "Usage: hep_sub -g <group> <executable job file>" >&2
    fi
    exit 1
}
while [ $# -gt 0 ]; do
    case "$1" in
        -g|-group)
            [ $# -ge 2 ] || usage
            group=$2; shift 2 ;;
        -n)
            [ "$KIND" = "boss.condor" ] && [ $# -ge 2 ] || usage
            count=$2; shift 2 ;;
        -*)
            [ $# -ge 2 ] || usage
            shift 2 ;;
        *)
            [ -z "$jobfile" ] || usage
            jobfile=$1; shift ;;
    esac
done
[ -n "$jobfile" ] || usage
[[ "$count" =~ ^[1-9][0-9]{0,3}$ ]] || usage
safe='^[A-Za-z0-9_.+-]+$'
if ! [[ "$group" =~ $safe ]]; then
    echo "ERROR: invalid group name $group" >&2; exit 1
fi
if ! [[ "$PWD" =~ ^/[A-Za-z0-9_./+-]*$ ]]; then
    echo "ERROR: unsupported working directory $PWD" >&2; exit 1
fi
files=()
for ((p = 0; p < count; p++)); do
    f=${jobfile//%\{ProcId\}/$p}
    f=${f//\$(Process)/$p}
    if ! [[ "$f" =~ $safe ]]; then
        echo "ERROR: invalid job file name $f" >&2; exit 1
    fi
    if [ ! -f "$f" ]; then
        echo "ERROR: job file $f does not exist" >&2; exit 1
    fi
    files+=("$f")
done
owner=$(id -un)
exec 9>>"$BATCH/counter.lock"
flock 9
last=""
read -r last 2>/dev/null < "$BATCH/counter"
cluster=$(( ${last:-52032426} + 1 ))
echo "$cluster" > "$BATCH/counter"
exec 9>&-
queue=$BATCH/queue/$EUID
[ -d "$queue" ] || mkdir -p "$queue"
now=${EPOCHREALTIME/,/.}
for ((p = 0; p < count; p++)); do
    d=$BATCH/jobs/$cluster.$p
    mkdir "$d"
    line=$(printf '{"cluster": %d, "cwd": "%s", "group": "%s", "jobfile": "%s", "kind": "%s", "owner": "%s", "proc": %d, "time": %s, "uid": %d}' \
        "$cluster" "$PWD" "$group" "${files[$p]}" "$KIND" "$owner" "$p" "$now" "$EUID")
    echo "$line" > "$d/spec.json"
    env -0 > "$d/env"
    echo I > "$d/state"
    echo "$line" >> "$BATCH/submissions.log"
    : > "$queue/$cluster.$p"
done
echo "$count job(s) submitted to cluster $cluster."
exec 8>>"$BATCH/schedd.$EUID.lock"
if flock -n 8; then
    exec 8>&-
    setsid @PY@ -S @SIMTOOL@ schedd </dev/null >/dev/null 2>&1 &
else
    exec 8>&-
fi
exit 0
