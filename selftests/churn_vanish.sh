#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# shellcheck disable=SC2154 # spawn_server sets VAR_pid, VAR_fd and VAR_out
# Things that vanish while portdispatch uses them: a target process in the
# middle of handshakes, a batch's owner in the middle of its batch,
# namespaces by the thousand, a namespace under traffic, the module under
# traffic. After each test the kernel log is clean, nothing holds the
# module, and every namespace the test deleted is freed: a reference the
# module kept to one of its sockets (through a rule, a staged rule, a
# remembered flow) would keep it (ns_lib.sh's ns_watch says how that is
# seen). On the debug kernel kmemleak scans for the rest.
#
#  Test 1: listeners die with connections in both of their queues
#
#   +---- cli ------------------+       +---- srv -----------------------------+
#   | c-s 198.18.0.1/24         | veth  | s-c 198.18.0.2/24  2001:db8::2/64    |
#   |     2001:db8::1/64        |<----->|  [::]:8080, never accepts <- tcp 80  |
#   | 4+4 connections to 80, 81 |       |    (a pid/fd target)                 |
#   |  held: accept queues      |       |  [::]:8081, never accepts <- tcp 81  |
#   | SYNs from 198.18.0.99 and |       |    (a port target)                   |
#   |  2001:db8::99, whose      |       |  neighbours .99, ::99: a MAC that    |
#   |  SYN-ACKs go nowhere:     |       |  nobody has                          |
#   |  SYN-RECV requests        |       +--------------------------------------+
#   +---------------------------+         kill -9 both servers, SYNs going on
#
#  Test 2: pdnl opens a batch, stages thousands of changes (adds, rules to
#  sockets of its own, a replace, a del, a flush), and is killed while it
#  sends more.
#  Test 3: pdnetns: 1,000 namespaces, each with rules, a steered TCP
#  connection and a steered UDP flow, made and killed in turn.
#  Test 4: test 1's two namespaces, with servers that keep their
#  connections and answer datagrams (pid/fd and port targets), steered
#  TCP connections that keep talking, and new TCP and UDP flows all along,
#  IPv4 and IPv6, while the server's namespace is deleted and its
#  processes die.
#  Test 5: three namespaces on loopback, each with a steered TCP
#  connection talking, new TCP and UDP flows all along and UDP answers
#  being rewritten, and rmmod.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

# New flows a second from each flood: enough to have some arrive at every
# moment, few enough that the guest still runs the test (on the debug
# kernel a packet costs fifty times as much).
RATE=60
[ "${KSFT_MACHINE_SLOW:-}" = yes ] && RATE=6

client_server()
{
	veth_link "$1" c-s "$2" s-c
	addr "$1" c-s 198.18.0.1/24 2001:db8::1/64
	addr "$2" s-c 198.18.0.2/24 2001:db8::2/64
}

# flood VAR NS PDSOCK-FLOOD-ARGS...: `pdsock flood` in NS until the test
# ends, once it floods; VAR_pid and VAR_out describe it.
flood()
{
	local var=$1 ns=$2 out

	shift 2
	new_file
	out=$REPLY
	ip netns exec "$ns" "$PD_BIN/pdsock" flood "$@" > "$out" 2>&1 &
	defer kill $!
	printf -v "${var}_pid" %s $!
	printf -v "${var}_out" %s "$out"
	wait_line "$out" '^flooding$' "$START_MS" ||
		fail "a flood ($*) did not start: $(cat "$out")"
}

# all_busy NS: every rule of NS steered flows, and every UDP rule's
# target had answers rewritten. One portctl run.
all_busy()
{
	local l n=0

	while IFS= read -r l; do
		n=$((n + 1))
		[[ $l =~ \ steered\ [1-9] ]] || return 1
		[[ $l != udp* || $l =~ \ replies\ [1-9] ]] || return 1
	done <<< "$(pcn "$1" -s list)"
	[ "$n" -gt 0 ]
}

# tcp_queues NS: how many connections wait in SYN-RECV for local ports 80
# and 81, in syn80 and syn81, and for the listeners on 8080 and 8081 to
# accept them, in acc8080 and acc8081. One ss run.
tcp_queues()
{
	local state recvq _ local_addr

	syn80=0 syn81=0 acc8080=0 acc8081=0
	while read -r state recvq _ local_addr _; do
		case $state:$local_addr in
		SYN-RECV:*:80) syn80=$((syn80 + 1)) ;;
		SYN-RECV:*:81) syn81=$((syn81 + 1)) ;;
		LISTEN:*:8080) acc8080=$((acc8080 + recvq)) ;;
		LISTEN:*:8081) acc8081=$((acc8081 + recvq)) ;;
		esac
	done <<< "$(ip netns exec "$1" ss -Htan)"
}

# handshakes_waiting NS N: requests in SYN-RECV on 80 and 81, and N
# connections to accept on 8080 and 8081.
handshakes_waiting()
{
	tcp_queues "$1"
	[ "$syn80" -gt 0 ] && [ "$syn81" -gt 0 ] &&
		[ "$acc8080" -ge "$2" ] && [ "$acc8081" -ge "$2" ]
}

no_handshakes()
{
	tcp_queues "$1"
	[ "$syn80" -eq 0 ] && [ "$syn81" -eq 0 ]
}

# no_rule NS PROTO PORT: NS has no rule PROTO PORT.
no_rule()
{
	[[ $'\n'$(pcn "$1" list) != *$'\n'"$2 $3 "* ]]
}

# undeliverable_grew NS PORT MIN
undeliverable_grew()
{
	local v

	v=$(rule_stat "$2" undeliverable "$1") && [ "$v" -gt "$3" ]
}

test_kill_mid_handshake()
{
	local cli srv nsid n

	setup_ns cli srv
	client_server "$cli" "$srv"
	ns_watch nsid "$srv"
	ip -n "$srv" neigh add 198.18.0.99 lladdr 02:00:00:00:00:99 dev s-c nud permanent
	ip -n "$srv" -6 neigh add 2001:db8::99 lladdr 02:00:00:00:00:99 dev s-c nud permanent
	dmesg_mark

	ns_server fd "$srv" -6 -q -p 8080
	ns_server port "$srv" -6 -q -p 8081
	pcn "$srv" add tcp 80 to pid "$fd_pid" fd "$fd_fd"
	pcn "$srv" add tcp 81 to port 8081
	flood syn4 "$cli" -a 198.18.0.2 -p 80 -p 81 -c 4 -S 198.18.0.99 -R "$RATE"
	flood syn6 "$cli" -6 -a 2001:db8::2 -p 80 -p 81 -c 4 -S 2001:db8::99 -R "$RATE"
	check_match "$(cat "$syn4_out" "$syn6_out")" '^held 8$' "connections the floods hold"

	# Steered, waiting in both queues of both listeners.
	busywait 10000 handshakes_waiting "$srv" 8 ||
		fail "not every listener has SYN-RECV requests and 8 connections to accept: $(ip netns exec "$srv" ss -Htan | grep -v ESTAB)"

	# Both die, SYNs still coming.
	kill -9 "$fd_pid" "$port_pid"
	wait "$fd_pid" "$port_pid" 2>/dev/null || true
	n=$(rule_stat 81 undeliverable "$srv")
	# The socket's rule goes; the port's stays, counting what it cannot
	# deliver; the requests die with their listeners.
	busywait 10000 no_rule "$srv" tcp 80 ||
		fail "the rule to the killed process's socket stayed: $(pcn "$srv" list)"
	busywait 10000 undeliverable_grew "$srv" 81 "$n" ||
		fail "the port rule counts no undeliverable SYN after its listener died: $(pcn "$srv" -s list)"
	busywait 20000 no_handshakes "$srv" ||
		fail "SYN-RECV requests outlived their listeners: $(ip netns exec "$srv" ss -Htn state syn-recv | head -n 5)"

	# A new server on the port target's port gets new connections again.
	ns_server again "$srv" -6 -p 8081
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -a 198.18.0.2 -p 81
	wait_line "$again_out" '^accept local=\[::ffff:198\.18\.0\.2\]:81 ' ||
		fail "the new server did not get the connection to port 81: $(cat "$again_out")"

	kill "$syn4_pid" "$syn6_pid"
	ns_vanish "$srv" "$nsid"
	busywait 5000 module_unused || fail "the module is still in use"
	dmesg_check_clean
}

# pdnl_start VAR NS: pdnl in NS, fed through a fifo; VAR_pid, VAR_in (the
# descriptor its commands go to) and VAR_out (its answers) describe it.
pdnl_start()
{
	local var=$1 fifo out in

	new_file
	fifo=$REPLY
	mkfifo "$fifo"
	new_file
	out=$REPLY
	ip netns exec "$2" "$PD_BIN/pdnl" < "$fifo" > "$out" 2>&1 &
	defer kill -9 $!
	printf -v "${var}_pid" %s $!
	exec {in}> "$fifo"
	printf -v "${var}_in" %s "$in"
	printf -v "${var}_out" %s "$out"
	printf -v "${var}_n" %s 0
	wait_line "$out" '^ready ' "$START_MS" || fail "pdnl did not start: $(cat "$out")"
}

# pdnl_send VAR CMD...: send a command, not waiting for its answer.
pdnl_send()
{
	local in=${1}_in n=${1}_n

	echo "${*:2}" >&"${!in}"
	printf -v "$n" %s $((${!n} + 1))
}

# pdnl_ask VAR CMD...: a command and its answer, in $reply.
pdnl_ask()
{
	local out=${1}_out n=${1}_n

	pdnl_send "$@"
	busywait 60000 has_count "${!out}" '^' $((${!n} + 1)) ||
		fail "pdnl did not answer '${*:2}': $(tail -n 3 "${!out}")"
	reply=$(tail -n 1 "${!out}")
	echo "pdnl $1: ${*:2} -> $reply"
}

pdnl_ok()
{
	pdnl_ask "$@"
	check_eq "$reply" ok "pdnl $1: ${*:2}"
}

test_kill_mid_batch()
{
	local ns nsid before n=2000 reply

	[ "${KSFT_MACHINE_SLOW:-}" = yes ] && n=300
	setup_ns ns
	ns_watch nsid "$ns"
	dmesg_mark
	ns_server srv "$ns" -b 127.0.0.1 -p 8080
	pcn "$ns" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
	pcn "$ns" add tcp 81 to port 8081
	pcn "$ns" add udp 53 to port 5353
	expect_status 0 pcn "$ns" list
	before=$out

	pdnl_start a "$ns"
	pdnl_start b "$ns"
	pdnl_ok a begin
	pdnl_ok a adds tcp 10000 "$n" 8080
	pdnl_ok a sock tcp 82
	pdnl_ok a sock udp 54
	pdnl_ok a replace tcp 81 9999
	pdnl_ok a del udp 53
	pdnl_ok a flush
	pdnl_ok a adds udp 20000 "$n" 5353
	# Open, holding every other writer off, and invisible.
	pdnl_ask b begin
	check_match "$reply" "^error EBUSY " "BEGIN of another socket while the batch is open"
	expect_status 0 pcn "$ns" list
	check_eq "$out" "$before" "the table while the batch is open"

	# Killed with more on its way.
	pdnl_send a adds udp 30000 "$n" 5353
	kill -9 "$a_pid"
	wait "$a_pid" 2>/dev/null || true

	# At once, no retry: another batch opens, nothing of the first one
	# applied or lingers (its staged rules would conflict).
	pdnl_ok b begin
	pdnl_ok b adds tcp 10000 10 8080
	pdnl_ok b sock tcp 82
	pdnl_ok b sock udp 54
	pdnl_ok b abort
	expect_status 0 pcn "$ns" list
	check_eq "$out" "$before" "the table after the batch's owner was killed"

	ns_vanish "$ns" "$nsid"
	busywait 5000 module_unused || fail "the module is still in use"
	dmesg_check_clean
}

test_netns_churn()
{
	local n=1000

	# A namespace costs the debug kernel forty times as much (0.3 s, not
	# 7 ms): make check makes 100 there, make stress 1,000 (and 5,000
	# elsewhere).
	if [ "${PORTDISPATCH_STRESS:-}" = 1 ]; then
		[ "${KSFT_MACHINE_SLOW:-}" = yes ] || n=5000
	elif [ "${KSFT_MACHINE_SLOW:-}" = yes ]; then
		n=100
	fi
	dmesg_mark
	expect_status 0 "$PD_BIN/pdnetns" -n "$n"
	echo "$out"
	busywait 5000 module_unused || fail "the module is still in use"
	dmesg_check_clean
}

# steered_after PID PORT MIN: through the namespace of process PID (which
# may have no name any more), the rule on PORT steered more than MIN.
steered_after()
{
	local v

	v=$(nsenter -t "$1" -n "$PORTCTL" -s list |
		sed -n "s/^[a-z]* $2 .* steered \([0-9]*\) .*/\1/p")
	[ "${v:-0}" -gt "$3" ]
}

# flood_clean FILE: the flood reported a second of sending, and no error:
# its held connections all took their bytes.
flood_clean()
{
	count_lines "$1" '^sent [0-9]+ errors 0$'
	[ "$REPLY" -gt 0 ] && ! has_line "$1" '^sent [0-9]+ errors [1-9]'
}

test_delete_netns_under_traffic()
{
	local cli srv nsid s80 pids f

	setup_ns cli srv
	client_server "$cli" "$srv"
	ns_watch nsid "$srv"
	dmesg_mark

	ns_server tcp "$srv" -6 -k -p 8080
	ns_server tcp2 "$srv" -6 -k -p 8081
	ns_server udp "$srv" -6 -u -p 5353
	pcn "$srv" add tcp 80 to pid "$tcp_pid" fd "$tcp_fd"
	pcn "$srv" add tcp 81 to port 8081
	pcn "$srv" add udp 53 to pid "$udp_pid" fd "$udp_fd"
	pcn "$srv" add udp 54 to port 5353
	# Steered connections that stay and talk, and new flows all along.
	flood tcp4 "$cli" -a 198.18.0.2 -p 80 -p 81 -c 2 -S 198.18.0.1 -R "$RATE"
	flood tcp6 "$cli" -6 -a 2001:db8::2 -p 80 -p 81 -c 2 -S 2001:db8::1 -R "$RATE"
	flood udp4 "$cli" -u -a 198.18.0.2 -p 53 -p 54 -S 198.18.0.1 -R "$RATE"
	flood udp6 "$cli" -6 -u -a 2001:db8::2 -p 53 -p 54 -S 2001:db8::1 -R "$RATE"
	for f in "$tcp_out:80" "$tcp2_out:81"; do
		busywait 10000 has_count "${f%:*}" "^accept local=\\[(::ffff:198\\.18\\.0\\.2|2001:db8::2)\\]:${f##*:} " 4 ||
			fail "the held connections to port ${f##*:} were not all steered: $(cat "${f%:*}")"
	done
	busywait 10000 all_busy "$srv" ||
		fail "a rule steered nothing, or no answer was rewritten: $(pcn "$srv" -s list)"
	for f in "$tcp4_out" "$tcp6_out"; do
		busywait 10000 flood_clean "$f" ||
			fail "the held connections do not all talk: $(tail -n 3 "$f")"
	done

	# The name goes: the namespace lives on with its processes, steering.
	pids=$(ip netns pids "$srv")
	s80=$(rule_stat 80 steered "$srv")
	ip netns del "$srv"
	busywait 10000 steered_after "$tcp_pid" 80 "$s80" ||
		fail "nothing steered after ip netns del"
	# Its last processes leave, all at once, under traffic.
	# shellcheck disable=SC2086
	kill -9 $pids 2>/dev/null
	# shellcheck disable=SC2086
	wait $pids 2>/dev/null || true
	busywait 20000 ns_freed "$nsid" ||
		fail "the namespace was deleted and left by its processes, but not freed: a reference to it is stuck; the client's sockets: $(ip netns exec "$cli" ss -tan | grep -v LISTEN)"
	busywait 5000 module_unused || fail "the module is still in use"
	dmesg_check_clean
}

# Each namespace: TCP to a socket, UDP to a port, or the other way round.
test_rmmod_under_traffic()
{
	local i ns
	local -a nss nsids floods=()

	setup_ns n1 n2 n3
	nss=("$n1" "$n2" "$n3")
	defer module_load
	dmesg_mark

	for i in 0 1 2; do
		ns=${nss[i]}
		ns_watch "nsids[$i]" "$ns"
		ns_server tcp "$ns" -6 -k -p 8080
		ns_server udp "$ns" -6 -u -p 5353
		if [ $((i % 2)) -eq 0 ]; then
			pcn "$ns" add tcp 80 to pid "$tcp_pid" fd "$tcp_fd"
			pcn "$ns" add udp 53 to port 5353
		else
			pcn "$ns" add tcp 80 to port 8080
			pcn "$ns" add udp 53 to pid "$udp_pid" fd "$udp_fd"
		fi
	done
	# TCP in one family, UDP in the other, in turn.
	for i in 0 1 2; do
		if [ $((i % 2)) -eq 0 ]; then
			flood syn "${nss[i]}" -a 127.0.0.1 -p 80 -c 1 -S 127.0.0.1 -R "$RATE"
			flood dgram "${nss[i]}" -6 -u -a ::1 -p 53 -S ::1 -R "$RATE"
		else
			flood syn "${nss[i]}" -6 -a ::1 -p 80 -c 1 -S ::1 -R "$RATE"
			flood dgram "${nss[i]}" -u -a 127.0.0.1 -p 53 -S 127.0.0.1 -R "$RATE"
		fi
		floods+=("$syn_pid" "$dgram_pid")
	done
	for i in 0 1 2; do
		busywait 10000 all_busy "${nss[i]}" ||
			fail "in ${nss[i]}, a rule steered nothing, or no answer was rewritten: $(pcn "${nss[i]}" -s list)"
	done

	expect_status 0 rmmod portdispatch
	if module_loaded; then
		fail "the module is still loaded after rmmod"
	fi
	# New connections meet no rule.
	expect_status 3 ip netns exec "$n1" "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
	expect_status 3 ip netns exec "$n2" "$PD_BIN/pdsock" connect -6 -a ::1 -p 80
	kill "${floods[@]}"

	module_load
	for i in 0 1 2; do
		expect_status 0 pcn "${nss[i]}" list
		check_eq "$out" "" "the table of ${nss[i]} after the module came back"
	done
	ns_vanish "$n1" "${nsids[0]}" "$n2" "${nsids[1]}" "$n3" "${nsids[2]}"
	busywait 5000 module_unused || fail "the module is still in use"
	dmesg_check_clean
}

require_root
require_cmd ss nsenter

ktap_plan 5
run_test "a listener killed with steered connections in SYN-RECV and accept queues, SYNs arriving (pid/fd and port targets)" test_kill_mid_handshake
run_test "a process killed in the middle of a batch: nothing applies, another batch opens at once" test_kill_mid_batch
run_test "namespaces with rules and steered flows, made and destroyed by the thousand" test_netns_churn
run_test "a namespace deleted under steered TCP and UDP traffic, IPv4 and IPv6, as its last processes leave" test_delete_netns_under_traffic
run_test "rmmod under floods of new TCP and UDP flows in three namespaces, answers being rewritten" test_rmmod_under_traffic
ktap_finish
