#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# shellcheck disable=SC2154 # spawn_server sets VAR_pid, VAR_fd and VAR_out
# Who may change a port table: whoever has CAP_NET_ADMIN over the user
# namespace that owns the network namespace, and, to name another
# process's socket, ptrace rights over that process.
#
#   initial user namespace                 user namespace of uid 65534
#   +------------------------------------+  +------------------------------+
#   | netns "tbl": tcp 81 -> port 8081   |  | netns of the container       |
#   |   uid 65534 (no capability):       |  |  (unshare -Urn as uid 65534, |
#   |   add/del/list/flush/stats/monitor |  |   lo up)                     |
#   |   refused                          |  |  "root" (uid 65534 outside): |
#   |                                    |  |   add tcp 80 -> its pdsock   |
#   | initial netns: tcp 81 -> port 8081 |  |   on 127.0.0.1:8080: steered |
#   |   stays, nothing else appears      |  |   naming root's pdsock       |
#   +------------------------------------+  |   (127.0.0.1:8081, in this   |
#                                           |   netns): refused, no ptrace |
#                                           +------------------------------+

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# The checkout may sit where uid 65534 cannot reach it (a clone under
# /root, mode 0700): the programs it runs are copies, in a directory that
# every user may read.
_bin=$(mktemp -d)
chmod 0755 "$_bin"
cp "$PORTCTL" "$_bin/portctl"
cp "$PD_BIN/pdsock" "$_bin/"
PORTCTL=$_bin/portctl
PD_BIN=$_bin

test_unprivileged_refused()
{
	local tbl cmd

	setup_ns tbl
	ip netns exec "$tbl" "$PORTCTL" add tcp 81 to port 8081

	# Every command, reading ones included, needs CAP_NET_ADMIN.
	for cmd in "add tcp 80 to port 8080" "list" "flush" "del tcp 81" "stats" "monitor"; do
		# shellcheck disable=SC2086
		expect_status 1 ip netns exec "$tbl" "${NOBODY[@]}" "$PORTCTL" $cmd
		check_match "$out" '^Error: .*needs CAP_NET_ADMIN\.$' "unprivileged 'portctl $cmd'"
	done

	expect_status 0 ip netns exec "$tbl" "$PORTCTL" list
	check_eq "$out" "tcp 81 any -> port 8081" "the table after the refusals"
}

# userns_or_skip: skip unless uid 65534 may make its own user namespace.
userns_or_skip()
{
	local v err

	require_cmd setpriv unshare nsenter
	if [ -r /proc/sys/kernel/unprivileged_userns_clone ]; then
		read -r v < /proc/sys/kernel/unprivileged_userns_clone
		[ "$v" != 0 ] || skip "unprivileged user namespaces are off (kernel.unprivileged_userns_clone = 0)"
	fi
	read -r v < /proc/sys/user/max_user_namespaces
	[ "$v" -gt 0 ] || skip "user namespaces are off (user.max_user_namespaces = 0)"
	err=$("${NOBODY[@]}" unshare -Urn true 2>&1) ||
		skip "uid 65534 cannot make a user namespace: $err"
}

# make_container: uid 65534's own user and network namespace, held by a
# sleeping process ($ct_pid); in_ct CMD... runs CMD there as its root,
# which is uid 65534 everywhere else.
make_container()
{
	"${NOBODY[@]}" unshare -Urn sleep 600 &
	ct_pid=$!
	defer kill "$ct_pid"
	# A command, not only the function in_ct: spawn_server's `kill $!`
	# must reach the server itself, which a function run in the
	# background would leave behind, and with it the container's
	# namespace and rules.
	IN_CT=("${NOBODY[@]}" nsenter --preserve-credentials -t "$ct_pid" -U -n --)
	busywait "$START_MS" _is_sleeping "$ct_pid" || fail "the container did not start"
	in_ct ip link set lo up
}

_is_sleeping()
{
	local comm

	read -r comm < "/proc/$1/comm" && [ "$comm" = sleep ]
}

in_ct()
{
	"${IN_CT[@]}" "$@"
}

test_container_root()
{
	local before uid

	userns_or_skip
	# A rule in the initial namespace, which the container must not see
	# or change.
	"$PORTCTL" add tcp 81 to port 8081
	defer "$PORTCTL" del tcp 81
	before=$("$PORTCTL" list)

	make_container
	expect_status 0 in_ct id -u
	check_eq "$out" 0 "uid inside the container"
	spawn_server own "${IN_CT[@]}" "$PD_BIN/pdsock" serve -b 127.0.0.1 -p 8080
	uid=$(awk '/^Uid:/ { print $2 }' "/proc/$own_pid/status")
	check_eq "$uid" 65534 "real uid of the container's server, seen from outside"

	expect_status 0 in_ct "$PORTCTL" add tcp 80 to pid "$own_pid" fd "$own_fd"
	expect_status 0 in_ct "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
	wait_line "$own_out" '^accept local=127\.0\.0\.1:80 peer=127\.0\.0\.1:' ||
		fail "the container's connection was not steered: $(cat "$own_out")"
	expect_status 0 in_ct "$PORTCTL" list
	check_match "$out" "^tcp 80 .*pid $own_pid .*fd $own_fd " "portctl list in the container"
	check_eq "$(echo "$out" | wc -l)" 1 "rules listed in the container"

	# The initial namespace's table is as it was, and its port 80 is
	# nobody's.
	expect_status 0 "$PORTCTL" list
	check_eq "$out" "$before" "the initial namespace's table"
	expect_status 3 "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
}

test_other_process_needs_ptrace()
{
	userns_or_skip
	make_container

	# root's server, in the container's network namespace, so that only
	# the owner differs from the container's own server.
	spawn_server root nsenter -t "$ct_pid" -n "$PD_BIN/pdsock" serve -b 127.0.0.1 -p 8081
	expect_status 1 in_ct "$PORTCTL" add tcp 81 to pid "$root_pid" fd "$root_fd"
	check_match "$out" "^Error: not allowed to take fd $root_fd of process $root_pid \(pidfd_getfd needs ptrace rights over it\)\.$" \
		"naming root's socket from the container"
	# Without "fd", portctl looks through the process's fds: not allowed
	# either.
	expect_status 1 in_ct "$PORTCTL" add tcp 81 to pid "$root_pid"
	check_match "$out" "^Error: not allowed to .* of process $root_pid " \
		"naming root's process from the container"
	expect_status 0 in_ct "$PORTCTL" list
	check_eq "$out" "" "the container's table after the refusals"

	# Its own process's socket, in the same namespace, is fine.
	spawn_server own "${IN_CT[@]}" "$PD_BIN/pdsock" serve -b 127.0.0.1 -p 8080
	expect_status 0 in_ct "$PORTCTL" add tcp 80 to pid "$own_pid" fd "$own_fd"
}

require_root
ktap_plan 3
run_test "without CAP_NET_ADMIN every command is refused, and says why" test_unprivileged_refused
run_test "a container's root manages its own namespace's table only" test_container_root
run_test "naming another user's socket needs ptrace rights over it" test_other_process_needs_ptrace
rm -rf "$_bin"
ktap_finish
