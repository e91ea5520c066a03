#!/usr/bin/env bash
# Loopback mail stack for Bramble's tests: Dovecot (IMAP + LMTP, Maildir, passwd-file users,
# a master-user service account, push_notification Lua callbacks) and Postfix (SMTP, delivering
# to Dovecot over LMTP). Everything binds 127.0.0.1 only; no systemd; run as root.
# bramble-testkit (`bramble_testkit::mail::MailStack`) embeds this file and runs it; it also
# works by hand:
#
#   crates/testkit/stack/mail-stack.sh start DIR   # write configs under DIR, start, write DIR/stack.env
#   crates/testkit/stack/mail-stack.sh stop  DIR   # stop what `start DIR` started (by pid files)
#
# Env knobs: PORT_BASE=10000 (IMAP +143, LMTP +24, SMTP +25; PORT_BASE <= 27000),
#   EXTRA_USERS=0 (uNNNN@example.test / pw), PUSH_URL (default: none; the Lua driver POSTs
#   one JSON object per mail event to it; DIR/push/USER, if present, holds a per-user URL
#   that overrides it), IMAP_MAX_CONN=4096.
# Users: alice, bob, carol @example.test with passwords alicepw, bobpw, carolpw. Service account:
#   log in as `alice@example.test*service` with password `servicepw` (Dovecot master user).
# Logs: DIR/dovecot/dovecot.log, DIR/postfix/postfix.log. Exit status 75: a port was in use
#   (pick another PORT_BASE).
# Later services (Radicale, Prosody, slapd) get their own write_*/start steps here.
set -euo pipefail

cmd=${1:-}; DIR=${2:-}
PORT_BASE=${PORT_BASE:-10000}
IMAP_PORT=$((PORT_BASE+143)); LMTP_PORT=$((PORT_BASE+24)); SMTP_PORT=$((PORT_BASE+25))
PORTS="$IMAP_PORT $LMTP_PORT $SMTP_PORT"
PUSH_URL=${PUSH_URL:-}
EXTRA_USERS=${EXTRA_USERS:-0}
IMAP_MAX_CONN=${IMAP_MAX_CONN:-4096}
USERS="alice bob carol"        # login alice@example.test / password alicepw, etc.
EX_PORT_IN_USE=75

log() { printf '[mail-stack %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
ms_since() { local now=$EPOCHREALTIME; echo $(( (${now/./} - ${1/./}) / 1000 )); }
lap() { log "$(printf '%-8s ready after %4d ms' "$1" "$(ms_since "$LAP")")"; LAP=$EPOCHREALTIME; }
listening() { ss -Hltn "sport = :$1" | grep -q .; }
wait_port() {  # wait_port PORT NAME LOG: wait up to 10 s for a listener on 127.0.0.1:PORT
  for _ in $(seq 100); do listening "$1" && return 0; sleep 0.1; done
  log "ERROR: $2 is not listening on 127.0.0.1:$1; the end of $3:"; tail -n 15 "$3" >&2 2>/dev/null || true
  grep -qi 'address already in use' "$3" 2>/dev/null && exit $EX_PORT_IN_USE
  exit 1
}
# need PROGRAM-OR-FILE DEBIAN-PACKAGE
need() {
  if [[ $1 == /* ]]; then [ -e "$1" ] && return 0; else command -v "$1" >/dev/null && return 0; fi
  die "$1 not found: install the Debian package $2 (scripts/test does this)"
}

check_requirements() {
  [ "$(id -u)" = 0 ] || die "the mail stack must run as root (Dovecot switches to the vmail user, Postfix starts as root)"
  need dovecot dovecot-imapd; need /usr/lib/dovecot/imap dovecot-imapd; need /usr/lib/dovecot/lmtp dovecot-lmtpd
  need /usr/lib/dovecot/modules/lib22_push_notification_lua_plugin.so dovecot-core
  compgen -G '/usr/share/lua/5.*/socket/http.lua' >/dev/null \
    || die "the Lua module socket.http not found: install the Debian package lua-socket (scripts/test does this)"
  need postfix postfix; need script bsdutils; need ss iproute2; need ps procps
  id vmail >/dev/null 2>&1 || die "no user vmail: create it with \`useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail\` (scripts/test does this)"
  id postfix >/dev/null 2>&1 || die "no user postfix: reinstall the Debian package postfix"
}

write_dovecot() {
  local d=$DIR/dovecot u i
  mkdir -p "$d/run" "$d/state" "$DIR/mail" "$DIR/push"
  for u in $USERS; do echo "$u@example.test:{PLAIN}${u}pw::::$DIR/mail/$u@example.test::"; done > "$d/users"
  for i in $(seq -f %04g 1 "$EXTRA_USERS"); do echo "u$i@example.test:{PLAIN}pw::::$DIR/mail/u$i@example.test::"; done >> "$d/users"
  # a service account that may log in as any user: USER*service / servicepw (Dovecot master user)
  echo "service:{PLAIN}servicepw" > "$d/masters"
  chmod 644 "$d/users" "$d/masters"
  chown -R vmail:vmail "$DIR/mail"
  echo "$PUSH_URL" > "$DIR/push/default"
  cat > "$d/dovecot.conf" <<EOF
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $d/run
state_dir = $d/state
instance_name = bramble-$PORT_BASE
log_path = $d/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0      # tests of wrong passwords need not wait 2 s
mail_uid = vmail
mail_gid = vmail
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_plugins = \$mail_plugins notify push_notification mail_lua push_notification_lua
mail_attribute_dict = file:%h/dovecot-attributes
protocol doveadm {
  mail_plugins =             # no push events for admin operations
}
protocol imap {
  imap_metadata = yes
  mail_max_userip_connections = 50
}
auth_master_user_separator = *
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN $d/masters
  result_success = continue
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $d/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $d/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0          # "performance mode": few login processes, many clients each
  process_min_avail = 1
  client_limit = $IMAP_MAX_CONN
}
service imap {
  process_limit = $IMAP_MAX_CONN
}
service stats {
  client_limit = $((IMAP_MAX_CONN * 2 + 100))
}
service anvil {
  client_limit = $((IMAP_MAX_CONN * 2 + 100))
  unix_listener anvil-auth-penalty {
    mode = 0                 # no auth penalty: after a failed login, the next ones from 127.0.0.1 would wait 2-15 s
  }
}
service auth {
  client_limit = $((IMAP_MAX_CONN * 2 + 100))
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
plugin {
  push_notification_driver = lua:file=$d/push.lua
  push_lua_dir = $DIR/push
}
EOF
  cat > "$d/push.lua" <<'EOF'
-- Dovecot push_notification Lua driver: one JSON POST per mail event. The URL is the one in
-- PUSH_DIR/USER if that file exists (set per test), else the one in PUSH_DIR/default; none: no POST.
local http = require("socket.http")
local ltn12 = require("ltn12")
http.TIMEOUT = 2   -- seconds; the driver is synchronous: a hung endpoint must not stall delivery

local function esc(s)
  return (tostring(s or ""):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

local function read_url(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local url = (f:read("*l") or ""):match("^%s*(.-)%s*$")
  f:close()
  return url
end

function dovecot_lua_notify_begin_txn(user)
  local dir = user:plugin_getenv("push_lua_dir")
  local ep = read_url(dir .. "/" .. user.username:gsub("/", "_"))
  if ep == nil then ep = read_url(dir .. "/default") end
  return { ep = ep, user = user.username, ev = {} }
end
local function add(ctx, e) table.insert(ctx.ev, e) end
for _, n in ipairs{ "message_new", "message_append", "message_read", "message_trash",
    "message_expunge", "flags_set", "flags_clear", "mailbox_create", "mailbox_delete",
    "mailbox_rename" } do _G["dovecot_lua_notify_event_" .. n] = add end

function dovecot_lua_notify_end_txn(ctx, success)
  if ctx.ep == nil or ctx.ep == "" then return end
  for _, e in ipairs(ctx.ev) do
    local body = string.format(
      '{"user":"%s","event":"%s","mailbox":"%s","uid":%d,"uidvalidity":%d,"from":"%s","subject":"%s"}',
      esc(ctx.user), esc(e.name), esc(e.mailbox), tonumber(e.uid) or 0, tonumber(e.uid_validity) or 0,
      esc(e.from), esc(e.subject))
    local ok, code = http.request{ url = ctx.ep, method = "POST",
      headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#body) },
      source = ltn12.source.string(body) }
    if not ok then dovecot.i_error("lua-push: " .. tostring(code)) end
  end
end
EOF
}

write_postfix() {
  local e=$DIR/postfix/etc s=$DIR/postfix/spool
  # the queue directory must NOT live inside the config directory (postfix-script then warns
  # about ownership); master.cf has no chroot
  mkdir -p "$e" "$s" "$DIR/postfix/data"; chown postfix "$DIR/postfix/data"
  cat > "$e/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $s
data_directory = $DIR/postfix/data
maillog_file = $DIR/postfix/postfix.log
maillog_file_prefixes = $DIR/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
myorigin = \$mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.test
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
local_transport = error:local delivery disabled
alias_maps =
alias_database =
disable_dns_lookups = yes
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no
smtputf8_enable = no
# the hostile-mail tests send a 25 MiB message (the default is 10,240,000 bytes; it must stay
# under mailbox_size_limit, 51,200,000)
message_size_limit = 50000000
biff = no
EOF
  cat > "$e/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
lmtp      unix  - - n -  - lmtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
  # Postfix waits (in 300 ms steps) until a config file it reads has not been modified for a
  # second ("still being written"): backdate them, or every start costs ~1.5 s more
  touch -d '-1 minute' "$e/main.cf" "$e/master.cf"
}

do_start() {
  [ -n "$DIR" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
  check_requirements
  # Listening ports must stay below the ephemeral range (32768+ on Linux): a client socket (or
  # its TIME_WAIT) can hold e.g. 127.0.0.1:45143 and make the bind fail at random.
  local p
  for p in $PORTS; do
    [ "$p" -lt "$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)" ] \
      || { log "ERROR: PORT_BASE=$PORT_BASE puts port $p in the ephemeral range; use PORT_BASE <= 27000"; exit 2; }
    ! listening "$p" || { log "ERROR: port $p already in use (pick another PORT_BASE)"; exit $EX_PORT_IN_USE; }
  done
  mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
  chmod 755 "$DIR"       # dovenull, vmail and postfix must traverse it
  local t0=$EPOCHREALTIME; LAP=$EPOCHREALTIME
  # Every IDLE session needs its own inotify instance, and the kernel limit (default 128) is per
  # UID -- all mail users share uid vmail. Past it Dovecot polls every 30 s instead.
  local need=$((IMAP_MAX_CONN + 1024))
  if [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt "$need" ]; then
    sysctl -qw fs.inotify.max_user_instances=$need 2>/dev/null \
      || log "WARNING: cannot raise fs.inotify.max_user_instances; >~120 concurrent IDLE sessions will poll"
  fi
  cat > "$DIR/stack.env" <<EOF
STACK_DIR=$DIR
PORT_BASE=$PORT_BASE
IMAP_PORT=$IMAP_PORT
LMTP_PORT=$LMTP_PORT
SMTP_PORT=$SMTP_PORT
MAIL_DOMAIN=example.test
EOF
  write_dovecot; write_postfix; lap configs

  # Dovecot daemonizes (pid in run/master.pid) but keeps the caller's stderr open forever:
  # redirect all three streams, or a caller reading our output through a pipe never sees EOF.
  if ! dovecot -c "$DIR/dovecot/dovecot.conf" </dev/null >/dev/null 2>"$DIR/dovecot/startup.err"; then
    log "ERROR: dovecot failed to start:"; cat "$DIR/dovecot/startup.err" >&2
    grep -qi 'address already in use' "$DIR/dovecot/startup.err" && exit $EX_PORT_IN_USE
    exit 1
  fi
  wait_port "$IMAP_PORT" imap "$DIR/dovecot/dovecot.log"; wait_port "$LMTP_PORT" lmtp "$DIR/dovecot/dovecot.log"
  lap dovecot
  # postfix(1) reports errors only to syslog or a tty: run it under script(1) to see them.
  # It daemonizes; the pid is in spool/pid/master.pid.
  script -qec "postfix -c $DIR/postfix/etc start" /dev/null </dev/null >"$DIR/postfix/startup.out" 2>&1 \
    || { log "ERROR: postfix failed to start:"; cat "$DIR/postfix/startup.out" >&2; exit 1; }
  wait_port "$SMTP_PORT" smtp "$DIR/postfix/postfix.log"; lap postfix
  log "mail stack up in $(ms_since "$t0") ms: $(tr '\n' ' ' < "$DIR/stack.env")"
}

# alive PID: running and not a zombie (an orphan's zombie may linger a second or more before
# init reaps it, and `kill -0` succeeds on it)
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ $s != Z* ]]; }

do_stop() {
  [ -n "$DIR" ] && [ -d "$DIR" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
  local t0=$EPOCHREALTIME pids="" f p comm busy="" ports=""
  for f in postfix/spool/pid/master.pid dovecot/run/master.pid; do
    [ -s "$DIR/$f" ] || continue
    p=$(tr -dc 0-9 < "$DIR/$f"); [ -n "$p" ] && alive "$p" || continue
    comm=$(ps -o comm= -p "$p" || true)
    case $comm in dovecot|master) ;; *) log "pid $p of $f is now '$comm': left alone"; continue ;; esac
    # The stack is disposable, so no clean shutdown: Dovecot takes ~1 s to exit after SIGTERM.
    # Both masters lead their own process group (they setsid): kill the group, children and all.
    if [ "$(ps -o pgid= -p "$p" | tr -d ' ')" = "$p" ]; then kill -9 -- "-$p"; else kill -9 "$p"; fi 2>/dev/null || true
    pids="$pids $p"
  done
  for _ in $(seq 200); do                      # wait (max 10 s) until they are gone
    local left=""; for p in $pids; do alive "$p" && left="$left $p"; done
    [ -z "$left" ] && break; sleep 0.05
  done
  # and until the ports are free for the next start
  [ -s "$DIR/stack.env" ] && ports=$(sed -n 's/^[A-Z]*_PORT=//p' "$DIR/stack.env")
  for _ in $(seq 200); do
    busy=""; for p in $ports; do listening "$p" && busy="$busy $p"; done
    [ -z "$busy" ] && break; sleep 0.05
  done
  [ -z "$busy" ] || { log "ERROR: ports still listening after stop:$busy"; exit 1; }
  log "stopped mail stack in $DIR in $(ms_since "$t0") ms (pids:$pids)"
}

case $cmd in
  start) do_start ;;
  stop)  do_stop ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
