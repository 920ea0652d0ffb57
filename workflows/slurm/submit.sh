#!/bin/bash
# Submit the whole run: one participant array (one task per subject) and the group job
# that starts when every task succeeded (afterok).
#
#   workflows/slurm/submit.sh BIDS_DIR OUTPUT_DIR [bids_brainage participant options]
#
# Environment: BIDS_BRAINAGE_IMAGE or BIDS_BRAINAGE_CMD, WORK_ROOT (see participant_array.sbatch),
#   MAX_PARALLEL     tasks running at once (default 50)
#   ARRAY            task indices to (re)submit, e.g. "3,17,40-42" (default: all subjects)
#   PARTICIPANT_ARGS / GROUP_ARGS   extra sbatch options, e.g. "--partition=short --mem=12G"
#   GROUP_OPTIONS    bids_brainage options for the group job only (e.g. "--device cuda")
#   NO_GROUP=1       submit the participant array only
# Prints the two job ids (array, group). Logs: OUTPUT_DIR/logs/slurm/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIDS_DIR=$(realpath "${1:?usage: submit.sh BIDS_DIR OUTPUT_DIR [options]}")
OUTPUT_DIR=$(realpath -m "${2:?usage: submit.sh BIDS_DIR OUTPUT_DIR [options]}")
shift 2
LOGS="$OUTPUT_DIR/logs/slurm"
mkdir -p "$LOGS"  # SLURM does not create the folders of -o files

# The subject list, frozen for this run so task indices stay meaningful on resubmission.
export SUBJECTS_FILE=${SUBJECTS_FILE:-$LOGS/subjects.txt}
if [ ! -s "$SUBJECTS_FILE" ]; then
    if [ -f "$BIDS_DIR/participants.tsv" ]; then
        awk -F'\t' 'NR > 1 && $1 != "" {print $1}' "$BIDS_DIR/participants.tsv" >"$SUBJECTS_FILE"
    else
        find "$BIDS_DIR" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' | sort >"$SUBJECTS_FILE"
    fi
fi
N=$(grep -cv -e '^[[:space:]]*$' -e '^#' "$SUBJECTS_FILE")
[ "$N" -gt 0 ] || { echo "no subjects in $SUBJECTS_FILE" >&2; exit 2; }

# shellcheck disable=SC2086  # *_ARGS hold several sbatch options
ARRAY_ID=$(sbatch --parsable --array="${ARRAY:-1-$N}%${MAX_PARALLEL:-50}" \
    -o "$LOGS/participant_%A_%a.log" ${PARTICIPANT_ARGS:-} \
    "$HERE/participant_array.sbatch" "$BIDS_DIR" "$OUTPUT_DIR" "$@")
ARRAY_ID=${ARRAY_ID%%;*}  # "id;cluster" on multi-cluster sites
echo "participant array: job $ARRAY_ID ($N subjects, tasks ${ARRAY:-1-$N})"
[ "${NO_GROUP:-0}" = 1 ] && exit 0

# shellcheck disable=SC2086
GROUP_ID=$(sbatch --parsable --dependency="afterok:$ARRAY_ID" --kill-on-invalid-dep=yes \
    -o "$LOGS/group_%j.log" ${GROUP_ARGS:-} \
    "$HERE/group.sbatch" "$BIDS_DIR" "$OUTPUT_DIR" ${GROUP_OPTIONS:-})
GROUP_ID=${GROUP_ID%%;*}
echo "group: job $GROUP_ID (starts after every task of $ARRAY_ID succeeded)"
