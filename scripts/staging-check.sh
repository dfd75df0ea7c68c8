#!/usr/bin/env bash
# `make staging-check`: starts the whole stack on loopback in its staging shape — the demo
# API as the existing API, gardien-backend (GARDIEN_ENVIRONMENT=staging) on PostgreSQL in a
# fresh schema of database `test`, delivering in sandbox through the fake SendGrid, SMTP
# and Twilio with each primary failing, gardien with policies/staging.yaml and its rate limits in
# Redis, the test frontend (gardien-test-frontend) on an allowed and a refused origin — every
# process on port 0, reporting the address it bound; then runs gardien-staging-check against
# it with the local handles (the backend's own URL, the demo signing key, an admin it signs
# up, headless Chromium on both origins) and tears everything down. Exits with the checker's
# code. Bounded: each start waits at most 30s, the check at most STAGING_CHECK_TIMEOUT.
#
# Variables:
#   STAGING_ORIGIN          the frontend origin the checker uses (default: the test
#                           frontend's allowed origin, http://localhost:<port>; another
#                           value skips the browser flow, which needs the page served)
#   FRONTEND_URL            the origin gardien allows (default: STAGING_ORIGIN)
#   STAGING_POSTGRES_URL    postgres://postgres@127.0.0.1:5432/test
#   STAGING_REDIS_URL       redis://127.0.0.1:6379/11 (this database's gardien:rl:* keys
#                           are cleared first: every run starts with full buckets)
#   STAGING_CHECK_TIMEOUT   300 (seconds)
#   STAGING_BIN_DIR         where the binaries are (${CARGO_TARGET_DIR:-target}/debug)
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${STAGING_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"
postgres="${STAGING_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis="${STAGING_REDIS_URL:-redis://127.0.0.1:6379/11}"
check_timeout="${STAGING_CHECK_TIMEOUT:-300}"
for binary in gardien gardien-backend examples/demo_api examples/staging_fakes gardien-test-frontend \
  gardien-staging-check; do
  if [ ! -x "$bin/$binary" ]; then
    echo "error: $bin/$binary is missing: run \`cargo build --workspace --bins --examples\`" >&2
    exit 2
  fi
done

work="$(mktemp -d)"
schema="staging_check_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  unset SENDGRID_API_KEY TWILIO_AUTH_TOKEN TWILIO_SECONDARY_AUTH_TOKEN
  wait 2>/dev/null || true
  psql -q "$postgres" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints the log of a process that did not start, then exits.
died() { # name, log
  echo "error: $1 did not start; its log:" >&2
  tail -n 40 "$2" >&2 || true
  exit 1
}

# Waits (at most 30s) for a line matching `pattern` in `file`, while `pid` lives; prints it.
wait_line() { # file, pattern, pid, name, log
  for _ in $(seq 1 300); do
    if line="$(grep -m1 -E "$2" "$1" 2>/dev/null)"; then echo "$line"; return 0; fi
    kill -0 "$3" 2>/dev/null || died "$4" "$5"
    sleep 0.1
  done
  died "$4 (no ready line within 30s)" "$5"
}

# Redis: this database's rate-limit buckets start full (they are keyed by client address).
redis_cli=(redis-cli -u "$redis")
"${redis_cli[@]}" --scan --pattern 'gardien:rl:*' | while read -r key; do
  "${redis_cli[@]}" del "$key" >/dev/null
done

# The frontend's stand-in: the test page on an allowed and a refused origin. The browser
# flow needs the page served, so it runs only when the checker uses these origins.
"$bin/gardien-test-frontend" --ready-file "$work/frontend.ready" >/dev/null 2>"$work/frontend.log" &
pids+=($!)
wait_line "$work/frontend.ready" '^refused_origin=' "${pids[-1]}" "the test frontend" "$work/frontend.log" >/dev/null
served_origin="$(sed -n 's/^origin=//p' "$work/frontend.ready")"
served_refused="$(sed -n 's/^refused_origin=//p' "$work/frontend.ready")"
origin="${STAGING_ORIGIN:-$served_origin}"
frontend="${FRONTEND_URL:-$origin}"
browser=()
if [ "$origin" = "$served_origin" ]; then
  browser=(--browser --refused-origin "$served_refused")
fi

# The existing API's stand-in; its tokens' issuer is the address it bound.
admin_email="staging-admin-${schema#staging_check_}@example.com"
DEMO_API_LISTEN=127.0.0.1:0 DEMO_ADMINS="$admin_email" RUST_LOG=info \
  "$bin/examples/demo_api" >"$work/demo_api.out" 2>"$work/demo_api.log" &
pids+=($!)
api="$(wait_line "$work/demo_api.out" '^demo_api listening on http://' "${pids[-1]}" "the demo API" "$work/demo_api.log")"
api="${api#demo_api listening on }"

# The fake SendGrid, SMTP relay and Twilio, each primary failing (crates/gardien-fakes/
# examples/staging_fakes.rs); the credentials are random, given to the fakes and the backend.
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
export SENDGRID_API_KEY="SG.staging-check.$(hex 16)"
export TWILIO_ACCOUNT_SID="AC$(hex 16)" TWILIO_AUTH_TOKEN="$(hex 16)"
export TWILIO_SECONDARY_ACCOUNT_SID="AC$(hex 16)" TWILIO_SECONDARY_AUTH_TOKEN="$(hex 16)"
FAKES_READY_FILE="$work/fakes.ready" "$bin/examples/staging_fakes" >/dev/null 2>"$work/fakes.log" &
pids+=($!)
wait_line "$work/fakes.ready" '^twilio=' "${pids[-1]}" "the fake providers" "$work/fakes.log" >/dev/null
fake() { sed -n "s/^$1=//p" "$work/fakes.ready"; }
smtp="$(fake smtp)"

# gardien-backend in staging on PostgreSQL, in a schema of its own, delivering in sandbox
# through the fakes: one attempt per provider, so a failing primary hands over at once.
psql -q "$postgres" -c "CREATE SCHEMA $schema" >/dev/null
case "$postgres" in *\?*) sep='&' ;; *) sep='?' ;; esac
internal_secret="staging-check-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$work/secrets"
env -u GOOGLE_CLOUD_PROJECT -u SECRET_MANAGER_PROJECT -u GOOGLE_APPLICATION_CREDENTIALS \
  GARDIEN_ENVIRONMENT=staging BACKEND_LISTEN=127.0.0.1:0 BACKEND_READY_FILE="$work/backend.ready" \
  DATABASE_URL="${postgres}${sep}options=-c%20search_path%3D${schema}" \
  SECRETS_DIR="$work/secrets" GARDIEN_INTERNAL_SECRET="$internal_secret" \
  NOTIFY_MODE=sandbox NOTIFY_ATTEMPTS_PER_PROVIDER=1 NOTIFY_PROVIDER_TIMEOUT=3s \
  NOTIFY_EMAIL_PROVIDERS=sendgrid,smtp NOTIFY_SMS_PROVIDERS=twilio,twilio-secondary \
  EMAIL_FROM="gardien staging <noreply@example.com>" SENDGRID_API_BASE_URL="$(fake sendgrid)" \
  SMTP_HOST="${smtp%:*}" SMTP_PORT="${smtp##*:}" SMTP_TLS=none \
  TWILIO_API_BASE_URL="$(fake twilio)" TWILIO_SECONDARY_FROM=+15005550006 \
  GARDIEN_LOG=info "$bin/gardien-backend" >/dev/null 2>"$work/backend.log" &
pids+=($!)
backend="http://$(wait_line "$work/backend.ready" '^127\.0\.0\.1:' "${pids[-1]}" "gardien-backend" "$work/backend.log")"

# gardien with the shipped staging policy.
env -u GOOGLE_CLOUD_PROJECT -u SECRET_MANAGER_PROJECT -u GOOGLE_APPLICATION_CREDENTIALS \
  GARDIEN_LISTEN=127.0.0.1:0 GARDIEN_ADMIN_LISTEN=127.0.0.1:0 GARDIEN_CLIENT_IP=direct \
  API_UPSTREAM_URL="$api" BACKEND_UPSTREAM_URL="$backend" FRONTEND_URL="$frontend" \
  JWT_ISSUER="$api" JWT_AUDIENCE=gardien-demo JWKS_URL="$api/.well-known/jwks.json" \
  REDIS_URL="$redis" GARDIEN_REPLICAS=1 GARDIEN_INTERNAL_SECRET="$internal_secret" \
  SECRETS_DIR="$work/secrets" GARDIEN_LOG=info \
  "$bin/gardien" run --policy policies/staging.yaml --ready-file "$work/gardien.ready" \
  >/dev/null 2>"$work/gardien.log" &
pids+=($!)
wait_line "$work/gardien.ready" '^admin_listen=' "${pids[-1]}" "gardien" "$work/gardien.log" >/dev/null
listen="$(grep -m1 '^listen=' "$work/gardien.ready")"
admin="$(grep -m1 '^admin_listen=' "$work/gardien.ready")"
gateway="http://${listen#listen=}"
admin="http://${admin#admin_listen=}"
ready=no
for _ in $(seq 1 300); do
  if curl -fs -o /dev/null "$admin/readyz"; then ready=yes; break; fi
  sleep 0.1
done
[ "$ready" = yes ] || died "gardien (/readyz not 200 within 30s)" "$work/gardien.log"

echo "staging stack: gardien $gateway (admin $admin), demo API $api, backend $backend, schema $schema"
status=0
STAGING_ADMIN_EMAIL="$admin_email" STAGING_ADMIN_PASSWORD="staging-$internal_secret" \
  timeout "$check_timeout" "$bin/gardien-staging-check" \
  --base-url "$gateway" --origin "$origin" --backend-url "$backend" \
  --signing-key examples/demo_api/demo_rsa_key.pem --sign-up-admin --expect-fallback \
  "${browser[@]}" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- gardien log (last lines) ---" >&2
  tail -n 20 "$work/gardien.log" >&2 || true
fi
exit "$status"
