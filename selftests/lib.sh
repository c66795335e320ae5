# SPDX-License-Identifier: GPL-2.0
# Helpers for portdispatch's shell selftests, in the spirit of
# tools/testing/selftests/net/lib.sh: namespaces with random names that are
# always cleaned up, a busy-wait, plain assertions, and KTAP output.
#
# A test file sources this, defines one function per test, and ends with:
#	ktap_plan 3
#	run_test "what it proves" test_function
#	...
#	ktap_finish
# Each test runs in a subshell with errexit: the first failing command or
# assertion ends it. `fail MSG` and `skip REASON` end it explicitly.
# Cleanups registered with `defer CMD...` run when the test ends, whatever
# way it ends, last registered first; those registered outside a test
# (for what several tests share: a namespace, a server) when the script
# ends.

set -u

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$_lib_dir")
PORTCTL=${PORTCTL:-$TOP/build/portctl}
PD_BIN=${PD_BIN:-$TOP/build/selftests}
PD_MODULE=${PD_MODULE:-$TOP/build/$(uname -r)/portdispatch.ko}
# The unpacked kernel sources (kselftest headers, ynl), outside the tree.
PD_CACHE=${PORTDISPATCH_CACHE:-$HOME/.cache/portdispatch}

_ktap_n=0
_ktap_pass=0
_ktap_fail=0
_ktap_skip=0

ktap_plan()
{
	echo "TAP version 13"
	echo "1..$1"
}

ktap_finish()
{
	echo "# Totals: pass:$_ktap_pass fail:$_ktap_fail xfail:0 xpass:0 skip:$_ktap_skip error:0"
	if [ "$_ktap_fail" -gt 0 ]; then
		exit $KSFT_FAIL
	elif [ "$_ktap_pass" -eq 0 ] && [ "$_ktap_skip" -gt 0 ]; then
		exit $KSFT_SKIP
	fi
	exit $KSFT_PASS
}

# Everything a test prints is a KTAP diagnostic.
_ktap_diag()
{
	sed -u 's/^/# /'
}

_defer_cmds=()

defer()
{
	_defer_cmds+=("$(printf '%q ' "$@")")
}

_run_deferred()
{
	local i

	for ((i = ${#_defer_cmds[@]} - 1; i >= 0; i--))
	do
		eval "${_defer_cmds[i]}" >/dev/null 2>&1 || true
	done
	_defer_cmds=()
}

# run_test NAME FUNCTION [ARGS...]
run_test()
{
	local name=$1 rc reason

	shift
	_ktap_n=$((_ktap_n + 1))
	: > "$_skip_file"
	(
		set -eE
		_defer_cmds=()	# the script's own, not the test's
		trap _run_deferred EXIT
		"$@"
	) 2>&1 | _ktap_diag
	rc=${PIPESTATUS[0]}

	case $rc in
	0)
		echo "ok $_ktap_n $name"
		_ktap_pass=$((_ktap_pass + 1))
		;;
	"$KSFT_SKIP")
		reason=$(cat "$_skip_file")
		echo "ok $_ktap_n $name # SKIP ${reason:-see above}"
		_ktap_skip=$((_ktap_skip + 1))
		;;
	*)
		echo "not ok $_ktap_n $name"
		_ktap_fail=$((_ktap_fail + 1))
		;;
	esac
}

_skip_file=$(mktemp)
trap '_run_deferred; rm -f "$_skip_file"' EXIT

fail()
{
	echo "FAIL: $*"
	exit 1
}

skip()
{
	echo "SKIP: $*"
	echo "$*" > "$_skip_file"
	exit "$KSFT_SKIP"
}

# check_eq ACTUAL EXPECTED WHAT
check_eq()
{
	[ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

# check_match TEXT REGEX WHAT (extended regex)
check_match()
{
	printf '%s\n' "$1" | grep -Eq -- "$2" || fail "$3: '$1' does not match /$2/"
}

# check_no_match TEXT REGEX WHAT
check_no_match()
{
	! printf '%s\n' "$1" | grep -Eq -- "$2" || fail "$3: '$1' matches /$2/"
}

# expect_status STATUS CMD...: CMD must exit with STATUS; its output is kept
# in $out (stdout and stderr together).
expect_status()
{
	local want=$1 rc=0

	shift
	out=$("$@" 2>&1) || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $out"
}

# What the kernel logs when something is wrong: selftests/run checks after
# each program, a test that wants to name the culprit itself checks too.
KERNEL_COMPLAINTS='WARNING:|BUG:|Oops|refcount_t:|KASAN:|UBSAN:|possible circular locking|possible recursive locking|suspicious RCU usage|inconsistent lock state|DEBUG_LOCKS_WARN|general protection fault|Call Trace|list_(add|del) corruption|sleeping function called from invalid context|scheduling while atomic|kmemleak:'

# PD_TIME_SCALE: the one factor of every time bound in the tests. Bounds
# are written for Debian's kernels; the debug kernel (KASAN, lockdep,
# kmemleak) runs everything about three times slower. selftests/run exports
# it (and KSFT_MACHINE_SLOW, which tells the tests that load tens of
# thousands of rules to load fewer); a test run alone works both out the
# same way. busywait scales its own bound; any other bound is written
# $((MS * PD_TIME_SCALE)).
if [ -z "${PD_TIME_SCALE:-}" ]; then
	case $(uname -r) in
	*-debug) PD_TIME_SCALE=3; export KSFT_MACHINE_SLOW=yes ;;
	*) PD_TIME_SCALE=1 ;;
	esac
fi
export PD_TIME_SCALE

# How long a process a test starts may take to say it is ready: python,
# with another guest beside it, takes seconds.
START_MS=20000

# busywait TIMEOUT_MS CMD...: until CMD succeeds; 1 if it never did.
# TIMEOUT_MS is the bound on Debian's kernels, times PD_TIME_SCALE here.
# Guests run under TCG, where every fork costs: the clock is bash's own.
busywait()
{
	local deadline=$((${EPOCHREALTIME/./} / 1000 + $1 * PD_TIME_SCALE))

	shift
	until "$@"; do
		[ $((${EPOCHREALTIME/./} / 1000)) -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# setup_ns VAR...: create a namespace per VAR, named VAR-<random>, with
# loopback up; the variable holds its name. Deleted when the test ends.
setup_ns()
{
	local var name

	for var in "$@"; do
		name="$var-$(mktemp -u XXXXXX)"
		ip netns add "$name" || fail "cannot create namespace $name"
		defer ip netns del "$name"
		ip -n "$name" link set lo up
		eval "$var=$name"
	done
}

# The module's parameters; set_param NAME VALUE sets one until the test
# ends.
PD_PARAMS=/sys/module/portdispatch/parameters

set_param()
{
	local f=$PD_PARAMS/$1 old

	[ -w "$f" ] || fail "the module has no writable parameter $1"
	old=$(cat "$f")
	defer sh -c 'echo "$1" > "$2"' sh "$old" "$f"
	echo "$2" > "$f"
}

# pcn NAMESPACE ARGS...: portctl in a namespace.
pcn()
{
	local ns=$1

	shift
	ip netns exec "$ns" "$PORTCTL" "$@"
}

# ns_stat KEY [NAMESPACE]: one counter of `portctl stats` in NAMESPACE
# (by default $NS), read with bash alone: a python3 per read is slow on
# the debug kernel.
ns_stat()
{
	local k v

	while read -r k v; do
		[ "$k" = "$1" ] && { echo "$v"; return; }
	done <<< "$(pcn "${2:-$NS}" stats)"
	return 1
}

# rule_stat PORT KEY [NAMESPACE]: one counter of the rule whose range
# starts at PORT, in `portctl -s list` of NAMESPACE (by default $NS), read
# with bash alone too; 1 if there is no such rule or counter.
rule_stat()
{
	local line re="^(tcp|udp) $1[ -].* $2 ([0-9]+)( |\$)"

	while IFS= read -r line; do
		[[ $line =~ $re ]] && { echo "${BASH_REMATCH[2]}"; return; }
	done <<< "$(pcn "${3:-$NS}" -s list)"
	return 1
}

# A module that a test unloaded is loaded again for the next one.
module_loaded()
{
	grep -q '^portdispatch ' /proc/modules
}

module_load()
{
	local dep

	module_loaded && return 0
	for dep in $(modinfo -F depends "$PD_MODULE" | tr ',' ' '); do
		modprobe "$dep"
	done
	insmod "$PD_MODULE" "$@"
}

require_root()
{
	[ "$(id -u)" -eq 0 ] || skip "needs root"
}

require_cmd()
{
	local c

	for c in "$@"; do
		command -v "$c" >/dev/null || skip "needs $c, which is not installed"
	done
}
