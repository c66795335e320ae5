#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# portctl exec (issue 16): a server on port 80 without privileges, taking
# its sockets as systemd passes them. The server is the example that make
# install ships (examples/listen-fds-http): HTTP on stream sockets, a
# datagram's original destination on datagram ones. Clients are curl and
# pdsock.
#
#   +-- S ------------------------------------------------------------+
#   | portctl exec -u nobody tcp 80 -- listen-fds-http                 |
#   |   = one process: portctl makes [::]:EPHEMERAL, adds             |
#   |     tcp 80 -> pid SELF fd 3, becomes nobody, execs the server    |
#   | curl http://127.0.0.1/, http://[::1]/; pdsock connect -u :53     |
#   | --replace: a second server takes port 80 under curl's load       |
#   +------------------------------------------------------------------+

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

require_cmd curl python3

# Copies nobody may run: the tree may be under /root (mode 700), where
# portctl exec -u nobody refuses the server, rightly, and where a
# container's root (uid 65534 outside) could not run portctl.
_bin=$(mktemp -d)
chmod 755 "$_bin"
cp "$TOP/examples/listen-fds-http" "$PORTCTL" "$_bin/"
defer rm -rf "$_bin"
SERVER=$_bin/listen-fds-http
CT_PORTCTL=$_bin/$(basename "$PORTCTL")
# The reaper looks every half second (busywait scales the bound).
REAP_MS=2000

setup_ns NS

# rule_pid PORT: the pid of the socket target of the rule on PORT, and its
# fd, as "PID FD"; 1 when there is no such rule.
rule_pid()
{
	local line re="^(tcp|udp) $1 .* pid ([0-9]+) \\(.*\\) fd ([0-9]+) "

	while IFS= read -r line; do
		[[ $line =~ $re ]] && { echo "${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"; return; }
	done <<< "$(pcn "$NS" list)"
	return 1
}

rule_owned_by()
{
	[ "$(rule_pid "$1")" = "$2 3" ]
}

rules_left()
{
	[ "$(ns_stat rules)" = "$1" ]
}

# serve VAR ARGS...: portctl exec ARGS in NS, in the background; VAR_pid is
# its pid (portctl's, then the server's) and VAR_out its output. Killed
# when the test ends.
serve()
{
	local var=$1

	shift
	new_file
	: > "$REPLY"
	# The reaper would take the rule soon after the kill; the next test
	# must not wait for it.
	defer pcn "$NS" flush
	ip netns exec "$NS" "$PORTCTL" exec "$@" > "$REPLY" 2>&1 &
	defer kill $!
	printf -v "${var}_pid" %s $!
	printf -v "${var}_out" %s "$REPLY"
}

# get URL: curl's page from NS, or fail.
get()
{
	ip netns exec "$NS" curl -sS --max-time $((20 * PD_TIME_SCALE)) "$1" 2>&1 ||
		fail "curl $1: no page"
}

# status_field PID NAME: the fields of a line of /proc/PID/status, one space
# apart.
status_field()
{
	local k v

	while read -r k v; do
		[ "$k" = "$2:" ] && { echo $v; return; }
	done < "/proc/$1/status"
}

test_serves_as_nobody()
{
	local page pid env groups

	serve s -u nobody tcp 80 -- "$SERVER" 'served as nobody'
	pid=$s_pid
	busywait "$START_MS" rule_owned_by 80 "$pid" ||
		fail "no rule tcp 80 -> pid $pid fd 3: $(pcn "$NS" list; cat "$s_out")"
	busywait "$START_MS" grep -q serving "$s_out" ||
		fail "the server did not start: $(cat "$s_out")"

	page=$(get http://127.0.0.1/)
	check_match "$page" '^served as nobody' "the page"
	check_match "$page" '^local 127\.0\.0\.1:80$' "what getsockname() said over IPv4"
	check_no_match "$page" '^listener .*:80$' "the port portctl bound"
	page=$(get 'http://[::1]/')
	check_match "$page" '^local \[::1\]:80$' "what getsockname() said over IPv6"

	check_eq "$(status_field "$pid" Uid)" "65534 65534 65534 65534" "the server's uids"
	check_eq "$(status_field "$pid" Gid)" "65534 65534 65534 65534" "the server's gids"
	groups=$(id -G nobody)
	check_eq "$(status_field "$pid" Groups)" "$groups" "the server's groups"
	check_eq "$(status_field "$pid" CapPrm)" 0000000000000000 "permitted capabilities"
	check_eq "$(status_field "$pid" CapEff)" 0000000000000000 "effective capabilities"
	check_eq "$(status_field "$pid" CapAmb)" 0000000000000000 "ambient capabilities"
	env=$(tr '\0' '\n' < "/proc/$pid/environ")
	check_match "$env" "^LISTEN_PID=$pid\$" "LISTEN_PID"
	check_match "$env" '^LISTEN_FDS=1$' "LISTEN_FDS"
	check_match "$env" '^LISTEN_FDNAMES=tcp-80$' "LISTEN_FDNAMES"
	check_match "$env" '^USER=nobody$' "USER"

	# Gone with the server, within the reaper's bound.
	kill "$pid"
	busywait "$REAP_MS" rules_left 0 ||
		fail "the rule outlived its server: $(pcn "$NS" list)"
}

test_udp_original_destination()
{
	serve u -4 udp 53 -- "$SERVER" 'answered'
	busywait "$START_MS" rule_owned_by 53 "$u_pid" ||
		fail "no rule udp 53 -> pid $u_pid fd 3: $(pcn "$NS" list; cat "$u_out")"
	busywait "$START_MS" grep -q serving "$u_out" ||
		fail "the server did not start: $(cat "$u_out")"
	# pdsock's socket is connected to port 53: only an answer from 53 counts.
	expect_status 0 ip netns exec "$NS" "$PD_BIN/pdsock" connect -u \
		-a 127.0.0.1 -p 53 -w $((5000 * PD_TIME_SCALE))
	check_eq "$out" replied "pdsock"
	has_count "$u_out" '^listen-fds-http: .* datagram .* to 127\.0\.0\.1:53$' 1 ||
		fail "IP_ORIGDSTADDR did not say port 53: $(cat "$u_out")"
}

# Sequential connections, each of its own, all the while the port moves from
# one server to the next: every one is answered.
test_replace_under_load()
{
	local n=120 load load_pid urls=() i old new held go

	serve one tcp 80 -- "$SERVER" one
	busywait "$START_MS" rule_owned_by 80 "$one_pid" ||
		fail "no rule for the first server: $(cat "$one_out")"
	busywait "$START_MS" grep -q serving "$one_out" ||
		fail "the first server did not start: $(cat "$one_out")"

	# A connection the first server holds, idle through the change: it
	# asks for its page once file $go exists.
	new_file
	held=$REPLY
	new_file
	go=$REPLY
	ip netns exec "$NS" bash -c '
		exec 5<>/dev/tcp/127.0.0.1/80 || exit
		echo connected
		while [ ! -e "$1" ]; do sleep 0.05; done
		printf "GET / HTTP/1.0\r\n\r\n" >&5
		cat <&5' held "$go" > "$held" 2>&1 &
	defer kill $!
	wait_line "$held" '^connected$' "$START_MS" ||
		fail "could not connect: $(cat "$held")"

	for i in $(seq "$n"); do
		urls+=("http://127.0.0.1/?$i")
	done
	new_file
	load=$REPLY
	: > "$load"
	ip netns exec "$NS" curl -sS --max-time $((120 * PD_TIME_SCALE)) \
		-H 'Connection: close' "${urls[@]}" > "$load" 2>&1 &
	load_pid=$!
	defer kill "$load_pid"
	busywait "$START_MS" has_count "$load" '^one$' 10 ||
		fail "no load on the first server: $(tail -3 "$load")"

	serve two --replace tcp 80 -- "$SERVER" two
	busywait "$START_MS" rule_owned_by 80 "$two_pid" ||
		fail "the second server did not take the port: $(pcn "$NS" list; cat "$two_out")"
	busywait "$START_MS" has_count "$load" '^two$' 1 ||
		fail "no page from the second server: $(tail -3 "$load")"
	: > "$go"
	wait_line "$held" '^one' "$START_MS" ||
		fail "the held connection lost its server: $(cat "$held")"
	kill -TERM "$one_pid"
	wait "$load_pid" ||
		fail "curl failed under the change: $(grep -Ev '^(one|two|client|local|listener) ?' "$load" | head -5)"

	old=$(grep -c '^one$' "$load")
	new=$(grep -c '^two$' "$load")
	check_eq $((old + new)) "$n" "pages answered ($old by one, $new by two)"
	check_eq "$(rule_pid 80)" "$two_pid 3" "the rule's owner"
	# The first server left: its listener closed, the rule did not move.
	busywait "$REAP_MS" eval '! kill -0 '"$one_pid"' 2>/dev/null' ||
		fail "the first server did not stop"
}

test_several_sockets()
{
	local out pid line inode3 inode4

	# sh stands for the server: it says what it got, and waits.
	serve sh tcp 80 udp 53 dst 127.0.0.2/32 -- sh -c \
		'echo "fds=$LISTEN_FDS pid=$LISTEN_PID self=$$ names=$LISTEN_FDNAMES"; exec sleep 600'
	pid=$sh_pid
	busywait "$START_MS" grep -q '^fds=' "$sh_out" || fail "sh said nothing: $(cat "$sh_out")"
	check_eq "$(cat "$sh_out")" "fds=2 pid=$pid self=$pid names=tcp-80:udp-53" "the environment"
	busywait "$START_MS" rule_owned_by 80 "$pid" || fail "no tcp rule: $(pcn "$NS" list)"
	check_eq "$(rule_pid 53)" "$pid 4" "the udp rule's socket"

	# The listings name the very sockets the process holds at fds 3 and 4.
	inode3=$(readlink "/proc/$pid/fd/3")
	inode4=$(readlink "/proc/$pid/fd/4")
	out=$(pcn "$NS" -j list)
	line=$(printf '%s' "$out" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    t = r["target"]
    print(r["proto"], t["fd"], "socket:[%d]" % t["inode"], t["local_addr"])')
	# A clause's prefix is its own: the tcp socket takes every address.
	check_eq "$line" "tcp 3 $inode3 ::
udp 4 $inode4 127.0.0.2" "the rules' sockets, bound to the rule's address"
}

probe_heard()
{
	pcn "$NS" replace tcp 1 to port 2
	[ -s "$1" ]
}

test_refusals_leave_no_rule()
{
	local bad events seen

	defer pcn "$NS" flush
	pcn "$NS" add tcp 80 to port 8080

	# Taken without --replace: the rule there stays as it was.
	expect_status 1 pcn "$NS" exec tcp 80 -- "$SERVER"
	check_match "$out" 'overlaps the rule tcp 80' "the refusal"
	check_eq "$(pcn "$NS" list)" "tcp 80 any -> port 8080" "the table"
	# All or nothing: the first clause was fine, the second was not. The
	# events show that no packet could have seen the first one's rule:
	# from the deletion of the probe that found the monitor listening to
	# the rule that marks the end, there is nothing else.
	new_file
	events=$REPLY
	: > "$events"
	ip netns exec "$NS" "$PORTCTL" monitor > "$events" 2>&1 &
	defer kill $!
	busywait "$START_MS" probe_heard "$events" || fail "the monitor heard nothing"
	pcn "$NS" del tcp 1
	wait_line "$events" '^deleted tcp 1 ' "$START_MS" || fail "no probe: $(cat "$events")"
	# (Not truncated: the monitor would go on writing at its offset.)
	seen=$(wc -l < "$events")
	expect_status 1 pcn "$NS" exec tcp 81 tcp 80 -- "$SERVER"
	pcn "$NS" add tcp 99 to port 8099
	wait_line "$events" 'tcp 99' "$START_MS" || fail "no events: $(cat "$events")"
	check_eq "$(tail -n +$((seen + 1)) "$events")" "added tcp 99 any -> port 8099" "the events"
	pcn "$NS" del tcp 99
	# The kernel's own sentence, for a port it will not take.
	expect_status 1 pcn "$NS" exec tcp 70000 -- "$SERVER"
	check_match "$out" '70000' "the kernel's refusal"
	# Refused before the table changes.
	expect_status 1 pcn "$NS" exec -u no-such-user tcp 82 -- "$SERVER"
	check_eq "$out" 'Error: there is no user "no-such-user".' "the message"
	expect_status 1 pcn "$NS" exec tcp 82 -- /no/such/server
	check_match "$out" 'No such file' "the message"
	expect_status 1 pcn "$NS" exec tcp 82 -- no-such-server-in-path
	check_eq "$(pcn "$NS" list)" "tcp 80 any -> port 8080" "the table"

	# A file exec refuses (not a program) is only found out by exec, after
	# the rule is made: its socket closes, and the rule goes with it.
	bad=$(mktemp)
	defer rm -f "$bad"
	printf '\177ELF but not really\n' > "$bad"
	chmod 755 "$bad"
	expect_status 1 pcn "$NS" exec -u nobody tcp 82 -- "$bad"
	check_match "$out" 'Exec format error' "the message"
	busywait "$REAP_MS" rules_left 1 ||
		fail "the failed server's rule stayed: $(pcn "$NS" list)"
}

# A reload of the boot-time rules holds a batch open for a moment; a server
# started meanwhile waits for it instead of failing with EBUSY.
test_waits_for_a_batch()
{
	local held pid

	new_file
	held=$REPLY
	: > "$held"
	printf '%s\n' begin 'sleep 1000' commit |
		ip netns exec "$NS" "$PD_BIN/pdnl" > "$held" 2>&1 &
	defer kill $!
	wait_line "$held" '^ok$' "$START_MS" || fail "pdnl opened no batch: $(cat "$held")"
	serve b tcp 80 -- sh -c 'echo started; exec sleep 600'
	pid=$b_pid
	busywait "$START_MS" grep -q started "$b_out" || fail "no server: $(cat "$b_out")"
	check_eq "$(cat "$b_out")" started "portctl's and the server's output"
	check_eq "$(rule_pid 80)" "$pid 3" "the rule"
	check_eq "$(grep -c '^ok$' "$held")" 3 "the batch's BEGIN, sleep and COMMIT"
}

# The root of a container: uid 65534 outside, in a user and network
# namespace of its own, with no privilege on the host. -u nobody is
# refused there before anything changes: nobody cannot be had inside.
test_container_root()
{
	local out v

	require_cmd setpriv unshare
	if [ -r /proc/sys/kernel/unprivileged_userns_clone ]; then
		read -r v < /proc/sys/kernel/unprivileged_userns_clone
		[ "$v" != 0 ] || skip "unprivileged user namespaces are off"
	fi
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups unshare -Urn bash -c '
		ip link set lo up
		"$1" exec -u nobody tcp 81 -- "$2" 2>&1
		# (stats: list would take a closed socket'"'"'s rule away itself)
		echo "status $? $("$1" stats | grep "^rules ")"
		"$1" exec tcp 80 -- "$2" "from the container" 2>/dev/null &
		for i in $(seq 200); do
			"$1" list | grep -q "pid $! " && break
			sleep 0.1
		done
		"$1" list
		curl -sS --max-time 60 http://127.0.0.1/
		kill $!' container "$CT_PORTCTL" "$SERVER" 2>&1) ||
		fail "in the container: $out"
	# (setgroups() is denied in such a namespace, and nobody's uid is not
	# mapped there.)
	check_match "$out" '^Error: could not (take the groups of|become) nobody: ' "-u nobody in the container"
	check_match "$out" '^status 1 rules 0$' "the refused exec"
	check_match "$out" '^tcp 80 any -> pid [0-9]+ \(listen-fds-http\) fd 3 ' "the container's rule"
	check_match "$out" '^from the container$' "the page"
	check_match "$out" '^local 127\.0\.0\.1:80$' "what getsockname() said"
}

ktap_plan 7
run_test "a server from LISTEN_FDS serves port 80 as nobody, without capabilities" test_serves_as_nobody
run_test "a UDP server reads port 53 with IP_ORIGDSTADDR and answers from it" test_udp_original_destination
run_test "--replace under load: no connection lost, the old server keeps its own" test_replace_under_load
run_test "several clauses: fds 3 and up in order, names, the rule's address" test_several_sockets
run_test "refusals and a failed exec leave no rule behind" test_refusals_leave_no_rule
run_test "a server started during another socket's batch waits for it" test_waits_for_a_batch
run_test "a container's root runs a server on port 80 in its own namespace" test_container_root
ktap_finish
