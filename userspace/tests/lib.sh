#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# KTAP reporting and portctl runners for the tests of this directory.
# Source it with PORTCTL set; results are printed by ktap_report at the end.

RESULTS=()
pass=0 fail=0 skip=0
WRAPPER=${PORTCTL_WRAPPER:-}
WORK=$(mktemp -d)
CHILDREN=()

lib_cleanup() {
	local pid

	for pid in "${CHILDREN[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap lib_cleanup EXIT

ok() {
	RESULTS+=("ok $((pass + fail + skip + 1)) $1")
	pass=$((pass + 1))
}

# not_ok NAME [DIAGNOSTIC...]
not_ok() {
	RESULTS+=("not ok $((pass + fail + skip + 1)) $1")
	fail=$((fail + 1))
	shift
	local line
	for line in "$@"; do
		RESULTS+=("# $line")
	done
}

skip() {
	RESULTS+=("ok $((pass + fail + skip + 1)) $1 # SKIP $2")
	skip=$((skip + 1))
}

# check NAME COMMAND...: ok when COMMAND succeeds.
check() {
	local name=$1

	shift
	if "$@"; then
		ok "$name"
	else
		not_ok "$name" "failed: $*"
	fi
}

# run ARGS...: portctl's exit status, stdout and stderr in RC, OUT, ERR.
run() {
	# shellcheck disable=SC2086 # the wrapper is words
	$WRAPPER "$PORTCTL" "$@" >"$WORK/out" 2>"$WORK/err" <"${STDIN:-/dev/null}"
	RC=$?
	OUT=$(cat "$WORK/out")
	ERR=$(cat "$WORK/err")
}

# expect NAME RC STDERR ARGS...: exit status RC and exactly STDERR.
expect() {
	local name=$1 rc=$2 err=$3

	shift 3
	run "$@"
	if [ "$RC" = "$rc" ] && [ "$ERR" = "$err" ]; then
		ok "$name"
	else
		not_ok "$name" "portctl $*" "expected exit $rc and: $err" \
			"got exit $RC and: $ERR"
	fi
}

# expect_match NAME RC REGEX ARGS...: exit status RC, stderr matches.
expect_match() {
	local name=$1 rc=$2 re=$3

	shift 3
	run "$@"
	if [ "$RC" = "$rc" ] && [[ $ERR =~ $re ]]; then
		ok "$name"
	else
		not_ok "$name" "portctl $*" "expected exit $rc and stderr ~ $re" \
			"got exit $RC and: $ERR"
	fi
}

# expect_out NAME STDOUT ARGS...: success, and exactly STDOUT.
expect_out() {
	local name=$1 out=$2

	shift 2
	run "$@"
	if [ "$RC" = 0 ] && [ "$OUT" = "$out" ] && [ -z "$ERR" ]; then
		ok "$name"
	else
		not_ok "$name" "portctl $*" "expected exit 0 and: $out" \
			"got exit $RC and: $OUT" "stderr: $ERR"
	fi
}

ktap_report() {
	echo "TAP version 13"
	echo "1..$((pass + fail + skip))"
	printf '%s\n' "${RESULTS[@]}"
	echo "# Totals: pass:$pass fail:$fail xfail:0 xpass:0 skip:$skip error:0"
	[ "$fail" = 0 ]
}
