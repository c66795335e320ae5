#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# units.sh PORTCTL: the systemd units and the example server, as make
# install lays them out, on the host (no kernel module, no systemd running).
#
# For PREFIX=/usr/local and PREFIX=/usr, `make install` of portctl and of
# systemd/ goes into a scratch root (DESTDIR); then the installed units,
# unchanged, must pass `systemd-analyze verify --root=ROOT` without a
# word of output: 252 exits 0 on an unknown key and only warns, so any
# output fails. verify looks for every unit and command under ROOT, so
# ROOT first gets what a real system has and make install does not
# provide: the host's own units (sysinit.target, network-pre.target...)
# and the system's commands the units name (/sbin/modprobe), never a
# path under PREFIX, which must come from the install. MANPATH points at
# the installed man page, which Documentation= names (not checked where
# man is missing, with a diagnostic).
#
# Then: a reinstall keeps an admin's rules file; the rules file that a
# fresh install writes applies nothing without failing (as the unit runs
# it, at boot), and its commented examples are valid batch lines; and
# listen-fds-http serves the sockets systemd-socket-activate passes it
# (a Unix one and a TCP one, curl through each) and refuses to run
# without sockets of its own. Output is KTAP.

set -u

PORTCTL=${1:?usage: units.sh PORTCTL}
[ -x "$PORTCTL" ] || { echo "units.sh: $PORTCTL is not a program" >&2; exit 1; }
PORTCTL=$(readlink -f "$PORTCTL")
TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

UNITS="portdispatch.service portdispatch-example-http.service"
SERVER=$TOP/examples/listen-fds-http
# Time bounds are for an idle machine; KSFT_MACHINE_SLOW multiplies them.
SCALE=1
[ -z "${KSFT_MACHINE_SLOW:-}" ] || SCALE=3

has() { command -v "$1" >/dev/null; }

# commands UNIT_FILE...: the command of each Exec*= line, prefixes removed.
commands() {
	sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^[:space:]]*\).*/\1/p' "$@"
}

# system_units ROOT: the host's own units, as a system has them beside the
# install (before it: the install must win).
system_units() {
	local d

	for d in /lib/systemd/system /usr/lib/systemd/system; do
		[ -d "$d" ] || continue
		mkdir -p "$1${d%/*}"
		cp -a "$d" "$1${d%/*}/" || return 1
	done
}

# system_commands ROOT PREFIX UNIT_FILE...: the commands the units name
# outside PREFIX, from the host.
system_commands() {
	local root=$1 prefix=$2 cmd

	shift 2
	for cmd in $(commands "$@"); do
		case $cmd in
		"$prefix"/*) ;;
		/*)	if [ -x "$cmd" ] && [ ! -e "$root$cmd" ]; then
				mkdir -p "$root${cmd%/*}"
				cp -L "$cmd" "$root$cmd" || return 1
			fi
			;;
		esac
	done
}

# install_into ROOT PREFIX TAG: make install of portctl and of systemd/.
install_into() {
	make -s -C "$TOP/userspace" install DESTDIR="$1" PREFIX="$2" &&
		make -s -C "$TOP/systemd" install DESTDIR="$1" PREFIX="$2" \
			OUT="$WORK/build-$3"
}

# layout ROOT PREFIX: every file in its place, the server executable.
layout() {
	local root=$1 prefix=$2 f missing=()

	for f in "$prefix/lib/systemd/system/portdispatch.service" \
		 "$prefix/lib/systemd/system/portdispatch-example-http.service" \
		 "$prefix/sbin/portctl" /etc/portdispatch/rules; do
		[ -f "$root$f" ] || missing+=("$f")
	done
	[ -x "$root$prefix/share/portdispatch/examples/listen-fds-http" ] ||
		missing+=("$prefix/share/portdispatch/examples/listen-fds-http (executable)")
	[ ${#missing[@]} -eq 0 ] && return
	printf 'missing %s\n' "${missing[@]}"
	return 1
}

# absolute ROOT PREFIX UNIT_FILE...: every command an absolute path, and
# the installed ones (PREFIX), the example's server included, there.
absolute() {
	local root=$1 prefix=$2 cmd server bad=()

	shift 2
	for cmd in $(commands "$@"); do
		case $cmd in
		"$prefix"/*) [ -x "$root$cmd" ] || bad+=("$cmd is not installed") ;;
		/*) ;;
		*) bad+=("$cmd is not an absolute path") ;;
		esac
	done
	server=$(sed -n 's/^ExecStart=.* -- \([^[:space:]]*\).*/\1/p' "$@")
	case $server in
	"$prefix"/*) [ -x "$root$server" ] || bad+=("the server $server is not installed") ;;
	*) bad+=("the example's server \"$server\" is not under $prefix") ;;
	esac
	[ ${#bad[@]} -eq 0 ] && return
	printf '%s\n' "${bad[@]}"
	return 1
}

# verify ROOT PREFIX: systemd-analyze verify on the installed units, silent.
# It runs man for Documentation=: without man, that part is not checked.
verify() {
	local out rc=0 man=yes

	has man || man=no
	# shellcheck disable=SC2086 # a list of names
	out=$(MANPATH="$1$2/share/man" systemd-analyze verify --man=$man \
		--root="$1" $UNITS 2>&1) || rc=$?
	[ "$rc" -eq 0 ] && [ -z "$out" ] && return
	printf 'exit %s\n%s\n' "$rc" "$out"
	return 1
}

# diag NAME FUNCTION ARGS...: ok when FUNCTION succeeds, else its output.
diag() {
	local name=$1 out

	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		local lines=()
		mapfile -t lines <<<"$out"
		not_ok "$name" "${lines[@]}"
	fi
}

# By name, not by path: verify finds them where systemd would, so the
# unit directory must be one it reads.
for prefix in /usr/local /usr; do
	tag=${prefix//\//-}
	root=$WORK/root$tag
	units=()
	for u in $UNITS; do
		units+=("$root$prefix/lib/systemd/system/$u")
	done
	mkdir -p "$root"
	if ! out=$(system_units "$root" 2>&1 && install_into "$root" "$prefix" "$tag" 2>&1); then
		not_ok "make install with PREFIX=$prefix" "$out"
		continue
	fi
	diag "make install with PREFIX=$prefix lays out the units, the server and the rules" \
		layout "$root" "$prefix"
	diag "the units' commands are absolute and installed (PREFIX=$prefix)" \
		absolute "$root" "$prefix" "${units[@]}"
	if ! has systemd-analyze; then
		skip "systemd-analyze verify of the units (PREFIX=$prefix)" "no systemd-analyze (package systemd)"
		continue
	fi
	if ! out=$(system_commands "$root" "$prefix" "${units[@]}" 2>&1); then
		not_ok "a root for systemd-analyze (PREFIX=$prefix)" "$out"
		continue
	fi
	diag "systemd-analyze verify finds nothing to say about the units (PREFIX=$prefix)" \
		verify "$root" "$prefix"
	has man || RESULTS+=("# no man: Documentation= was not checked")
done

# An admin's rules survive a reinstall.
root=$WORK/root-usr-local
rules=$root/etc/portdispatch/rules
fresh=$WORK/rules.fresh
cp "$rules" "$fresh"
echo "replace tcp 80 to port 8080" >"$rules"
install_into "$root" /usr/local -usr-local >/dev/null 2>&1
check "make install keeps an admin's rules file" \
	[ "$(cat "$rules")" = "replace tcp 80 to port 8080" ]

# What a fresh install writes applies nothing and succeeds, as it must at
# boot; its examples, uncommented, pass the parser (exit 1: no module).
run -b "$fresh"
if [ "$RC" = 0 ] && [ -z "$ERR" ]; then
	ok "the fresh rules file applies nothing, successfully"
else
	not_ok "the fresh rules file applies nothing, successfully" "portctl -b: exit $RC: $ERR"
fi
sed -n 's/^# *\(\(-[46] \)*\(add\|replace\|del\|flush\)\b.*\)/\1/p' "$fresh" >"$WORK/rules.examples"
run -b "$WORK/rules.examples"
if [ -s "$WORK/rules.examples" ] && [ "$RC" = 1 ] && [[ $ERR == Error:* ]]; then
	ok "the rules file's examples are valid batch lines"
else
	not_ok "the rules file's examples are valid batch lines" \
		"$(wc -l <"$WORK/rules.examples") lines; exit $RC: $ERR"
fi

# free_port: a TCP port nothing listens on now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# activate TEXT: listen-fds-http under systemd-socket-activate, on a Unix
# socket and a TCP port (PORT), once both are bound; 1 if they never are.
activate() {
	local _

	for _ in 1 2 3; do
		PORT=$(free_port)
		rm -f "$WORK/http.sock"
		systemd-socket-activate -l "$WORK/http.sock" -l "127.0.0.1:$PORT" \
			--fdname=unix:tcp "$SERVER" "$1" 2>"$WORK/activate.err" &
		SPID=$!
		CHILDREN+=("$SPID")
		for _ in $(seq $((100 * SCALE))); do
			grep -q ' as 4\.$' "$WORK/activate.err" && return 0
			kill -0 "$SPID" 2>/dev/null || break
			sleep 0.05
		done
		kill "$SPID" 2>/dev/null
		wait "$SPID" 2>/dev/null
		# Lost the port to another program: another one.
		grep -q 'Address already in use' "$WORK/activate.err" || return 1
	done
	return 1
}

if ! has systemd-socket-activate || ! has curl || ! has python3; then
	skip "listen-fds-http serves what systemd-socket-activate passes" \
		"needs systemd-socket-activate, curl and python3"
elif ! activate "units.sh was here"; then
	not_ok "listen-fds-http serves what systemd-socket-activate passes" \
		"systemd-socket-activate did not start:" "$(cat "$WORK/activate.err")"
else
	unix=$(curl -sS --max-time $((10 * SCALE)) --unix-socket "$WORK/http.sock" http://localhost/ 2>&1)
	tcp=$(curl -sS --max-time $((10 * SCALE)) "http://127.0.0.1:$PORT/" 2>&1)
	want_unix=$(printf '%s\n' "units.sh was here" "client -" \
		"local $WORK/http.sock" "listener $WORK/http.sock")
	re="^units.sh was here
client 127\.0\.0\.1:[0-9]+
local 127\.0\.0\.1:$PORT
listener 127\.0\.0\.1:$PORT\$"
	if [ "$unix" = "$want_unix" ] && [[ $tcp =~ $re ]]; then
		ok "listen-fds-http serves what systemd-socket-activate passes"
	else
		not_ok "listen-fds-http serves what systemd-socket-activate passes" \
			"Unix socket:" "$unix" "TCP port $PORT:" "$tcp" \
			"stderr:" "$(cat "$WORK/activate.err")"
	fi
	kill "$SPID" 2>/dev/null
	wait "$SPID" 2>/dev/null
fi

# refuses NAME STDERR_REGEX ENV...: exit 1 with a reason, serving nothing.
refuses() {
	local name=$1 re=$2 err rc=0

	shift 2
	err=$(env -u LISTEN_PID -u LISTEN_FDS -u LISTEN_FDNAMES "$@" \
		"$SERVER" </dev/null 2>&1 >/dev/null) || rc=$?
	if [ "$rc" = 1 ] && [[ $err =~ $re ]]; then
		ok "$name"
	else
		not_ok "$name" "expected exit 1 and stderr ~ $re" "got exit $rc and: $err"
	fi
}

if has python3; then
	refuses "listen-fds-http refuses to run without LISTEN_FDS" \
		'^listen-fds-http: no sockets passed: LISTEN_PID and LISTEN_FDS are not set'
	refuses "listen-fds-http refuses the sockets of another pid" \
		'^listen-fds-http: the sockets are not mine: LISTEN_PID is 1, my pid is [0-9]+$' \
		LISTEN_PID=1 LISTEN_FDS=1
else
	skip "listen-fds-http refuses to run without sockets" "no python3"
fi

ktap_report
