#!/bin/sh
# gpudoctor as a Slurm health check (HealthCheckProgram) or prolog.
#
#   slurm.conf:  HealthCheckProgram=/usr/local/sbin/gpudoctor-healthcheck.sh
#                HealthCheckInterval=600
#   or prolog:   Prolog=/usr/local/sbin/gpudoctor-healthcheck.sh   (with GPUDOCTOR_MODE=prolog)
#
# gpudoctor scan exits 0 ok, 1 warn, 2 fail, 3 unknown (64-73: gpudoctor itself
# could not run) and prints one line: "<VERDICT>: <worst finding> (<rule id>) ...".
#   fail     -> drain the node with that line as the reason (prolog: also exit 1,
#               so Slurm requeues the job and keeps the node drained)
#   ok       -> resume the node if gpudoctor drained it earlier (never another drain)
#   warn     -> log only
#   unknown  -> log only, or drain with GPUDOCTOR_DRAIN_ON_UNKNOWN=1
#   64-73    -> log only: a broken health check must not drain a whole cluster
#
# Environment: GPUDOCTOR (command, default "gpudoctor"), GPUDOCTOR_ARGS (extra scan
# arguments, e.g. "--rules /etc/gpudoctor/rules"), GPUDOCTOR_TIMEOUT (seconds, 120),
# GPUDOCTOR_MODE (healthcheck|prolog), GPUDOCTOR_DRAIN_ON_UNKNOWN (0|1),
# GPUDOCTOR_DRY_RUN=1 (print the scontrol commands instead of running them),
# NODENAME (default: hostname -s).
set -u

GPUDOCTOR="${GPUDOCTOR:-gpudoctor}"
GPUDOCTOR_ARGS="${GPUDOCTOR_ARGS:-}"
TIMEOUT="${GPUDOCTOR_TIMEOUT:-120}"
MODE="${GPUDOCTOR_MODE:-healthcheck}"
DRAIN_ON_UNKNOWN="${GPUDOCTOR_DRAIN_ON_UNKNOWN:-0}"
NODE="${NODENAME:-$(hostname -s)}"
REASON_PREFIX="gpudoctor:"

log() {
    logger -t gpudoctor-healthcheck -- "$*" 2>/dev/null || true
    echo "$*" >&2
}

scontrol_run() {
    if [ "${GPUDOCTOR_DRY_RUN:-0}" = "1" ]; then
        echo "DRY-RUN scontrol $*"
    else
        timeout 30 scontrol "$@"
    fi
}

current_reason() {
    [ "${GPUDOCTOR_DRY_RUN:-0}" = "1" ] && { echo "${GPUDOCTOR_CURRENT_REASON:-}"; return; }
    timeout 30 scontrol show node "$NODE" 2>/dev/null | sed -n 's/^ *Reason=\(.*\) \[.*$/\1/p'
}

drain() {
    # Slurm keeps the reason as given; quotes are stripped so the command line stays intact.
    reason=$(printf '%s %s' "$REASON_PREFIX" "$1" | tr -d '"' | cut -c1-240)
    scontrol_run update NodeName="$NODE" State=DRAIN Reason="$reason"
}

errors=$(mktemp) || exit 0
trap 'rm -f "$errors"' EXIT

# shellcheck disable=SC2086  # GPUDOCTOR and GPUDOCTOR_ARGS are word lists on purpose
line=$(timeout "$TIMEOUT" $GPUDOCTOR scan --format oneline $GPUDOCTOR_ARGS 2>"$errors")
rc=$?
line=$(printf '%s' "$line" | head -n 1)

case "$rc" in
    0)
        case "$(current_reason)" in
            "$REASON_PREFIX"*) scontrol_run update NodeName="$NODE" State=RESUME ;;
        esac
        echo "$line"
        exit 0
        ;;
    1)
        log "$NODE $line"
        echo "$line"
        exit 0
        ;;
    2)
        log "$NODE draining: $line"
        drain "$line"
        echo "$line"
        [ "$MODE" = "prolog" ] && exit 1
        exit 0
        ;;
    3)
        log "$NODE $line"
        if [ "$DRAIN_ON_UNKNOWN" = "1" ]; then
            drain "$line"
            [ "$MODE" = "prolog" ] && exit 1
        fi
        echo "$line"
        exit 0
        ;;
    124 | 137)
        log "$NODE gpudoctor scan timed out after ${TIMEOUT}s; not draining"
        exit 0
        ;;
    *)
        log "$NODE gpudoctor could not run (exit $rc): $(head -n 1 "$errors")"
        exit 0
        ;;
esac
