# slurmrestd on 127.0.0.1:6820 with JWT authentication, on top of the cluster of scripts/rig/slurm.sh,
# idempotently.
#
# Sourced by scripts/services after scripts/rig/slurm.sh (it uses say, apt_install, wait_port, RIG_DIR
# and slurm.sh's listening and $SLURM_JWT_KEY); run directly (`bash scripts/rig/slurmrestd.sh`, as
# root) it sources slurm.sh itself, brings the cluster up and then slurmrestd.
#
#   slurmrestd_up      slurmrestd as the unprivileged user slurmrestd with rest_auth/jwt and the
#                      v0.0.38 + dbv0.0.38 OpenAPI plugins; proof: `scontrol token` and one authenticated
#                      GET /slurm/v0.0.38/ping answered with HTTP 200. The JWT key and auth/jwt in
#                      slurm.conf and slurmdbd.conf are slurm.sh's (slurm_up), so the cluster's config
#                      has one writer
#   slurmrestd_status  an "up    ..." / "down  ..." line
#
# A token for a user: `scontrol token username=NAME lifespan=SECONDS` (as root or SlurmUser), sent as
# X-SLURM-USER-NAME / X-SLURM-USER-TOKEN. slurmrestd does not daemonize: it runs under nohup setsid,
# its log in $RIG_DIR/slurmrestd.log, its pid in $RIG_DIR/slurmrestd.pid.

SLURMRESTD_PORT=${GENIUS_SLURMRESTD_PORT:-6820}
SLURMRESTD_USER=slurmrestd
SLURMRESTD_PLUGINS=openapi/v0.0.38,openapi/dbv0.0.38

_slurmrestd_get() { # path token : HTTP status of an authenticated GET (the token travels on stdin)
  # curl reads the headers from a file (here stdin), so the token is never in argv
  printf 'X-SLURM-USER-NAME: root\nX-SLURM-USER-TOKEN: %s\n' "$2" |
    curl -s -o /dev/null -w '%{http_code}' -H @- "http://127.0.0.1:$SLURMRESTD_PORT$1"
}

slurmrestd_up() {
  dpkg -s slurmrestd >/dev/null 2>&1 || apt_install slurmrestd
  command -v curl >/dev/null || apt_install curl
  id -u "$SLURMRESTD_USER" >/dev/null 2>&1 ||
    useradd --system --no-create-home --shell /usr/sbin/nologin "$SLURMRESTD_USER"

  if ! listening "$SLURMRESTD_PORT"; then
    say "starting slurmrestd on 127.0.0.1:$SLURMRESTD_PORT"
    # SLURM_JWT=daemon: slurmrestd authenticates each request with the caller's token, not its own.
    # It refuses to run as root or SlurmUser, hence its own user (setpriv drops to it before exec).
    SLURM_JWT=daemon nohup setsid setpriv --reuid="$SLURMRESTD_USER" --regid="$SLURMRESTD_USER" \
      --clear-groups /usr/sbin/slurmrestd -a rest_auth/jwt -s "$SLURMRESTD_PLUGINS" \
      "127.0.0.1:$SLURMRESTD_PORT" >"$RIG_DIR/slurmrestd.log" 2>&1 </dev/null &
    echo $! >"$RIG_DIR/slurmrestd.pid"
    wait_port "$SLURMRESTD_PORT" slurmrestd 30
  fi

  # Proof: a token from slurmctld, and slurmrestd answering a request authenticated with it.
  local token code
  token=$(scontrol token username=root lifespan=60 2>/dev/null | sed -n 's/^SLURM_JWT=//p')
  [ -n "$token" ] || { say "scontrol token gives no token (log: /var/log/slurm/slurmctld.log)"; return 1; }
  code=$(_slurmrestd_get /slurm/v0.0.38/ping "$token")
  [ "$code" = 200 ] || {
    say "slurmrestd answers HTTP $code to an authenticated ping (log: $RIG_DIR/slurmrestd.log)"; return 1; }
  code=$(_slurmrestd_get /slurm/v0.0.38/ping "not-a-token")
  [ "$code" != 200 ] || { say "slurmrestd accepts a bad token"; return 1; }
}

slurmrestd_status() {
  if listening "$SLURMRESTD_PORT"; then
    echo "up    slurmrestd (http://127.0.0.1:$SLURMRESTD_PORT, JWT key $SLURM_JWT_KEY)"
  else
    echo "down  slurmrestd (127.0.0.1:$SLURMRESTD_PORT)"
  fi
}

# Run directly: the few helpers scripts/services would define, slurm.sh, then slurmrestd_up.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ROOT=$(cd "$(dirname "$0")/../.." && pwd)
  RIG_DIR=${GENIUS_RIG_DIR:-/tmp/genius-rig}
  mkdir -p "$RIG_DIR"
  say() { printf '[slurmrestd] %s\n' "$*" >&2; }
  port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  wait_port() { # port name seconds
    for _ in $(seq 1 $(($3 * 10))); do port_open "$1" && return 0; sleep 0.1; done
    say "$2 did not come up on 127.0.0.1:$1 (logs in $RIG_DIR)"; return 1
  }
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
  # shellcheck source=slurm.sh
  . "$ROOT/scripts/rig/slurm.sh"
  slurm_up
  slurmrestd_up
  slurmrestd_status
fi
