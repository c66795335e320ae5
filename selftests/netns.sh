#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# shellcheck disable=SC2154 # spawn_server sets VAR_pid, VAR_fd and VAR_out
# portdispatch and network namespaces. Every namespace has its own table,
# which steers only what reaches that namespace's own addresses.
#
#  Tests 1-4: a client and a server namespace on one veth pair
#
#   +---- cli ---------------+          +---- srv -------------------------+
#   | c-s 198.18.0.1/24      |  veth    | s-c 198.18.0.2/24                |
#   |     2001:db8::1/64     |<-------->|     2001:db8::2/64               |
#   +------------------------+          |  rules: tcp 80 -> :8080 socket   |
#                                       |         udp 53 -> :5353 socket   |
#                                       +----------------------------------+
#
#   Test 2 adds a copy of the pair without rules (cli2 -- other, same
#   addresses); test 3 uses two bare namespaces, A and B.
#
#  Test 5: a router in between, with a rule of its own
#
#   +-- cli ------------+       +-- rtr ------------------+       +-- srv -----------+
#   | c-r 198.18.0.1/24 |       | r-c 198.18.0.2/24       |       | s-r 198.18.1.2/24|
#   |  2001:db8::1/64   |<----->|  2001:db8::2/64         |       |  2001:db8:1::2/64|
#   | default via rtr   |       | r-s 198.18.1.1/24       |<----->| default via rtr  |
#   +-------------------+       |  2001:db8:1::1/64       |       | listens on :80,  |
#                               | forwarding on           |       |  udp :53         |
#                               | rules: tcp 80 -> :8080, |       +------------------+
#                               |        udp 53 -> :5353  |
#                               +-------------------------+
#
#   A connection through the router to srv's own port 80 must reach srv;
#   one to the router's own address is the router's to steer.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

# client_server CLI SRV: the veth pair of tests 1-4 between two namespaces.
client_server()
{
	veth_link "$1" c-s "$2" s-c
	addr "$1" c-s 198.18.0.1/24 2001:db8::1/64
	addr "$2" s-c 198.18.0.2/24 2001:db8::2/64
}

# accepted SERVER_OUT REGEX: the server's accept (or recv) lines include
# one that matches REGEX (waited for: the server prints it after the
# client is done).
accepted()
{
	wait_line "$1" "$2" 5000 ||
		fail "the server did not report /$2/; it said: $(tr '\n' ';' < "$1")"
}

test_steer_across_veth()
{
	local cli srv

	setup_ns cli srv
	client_server "$cli" "$srv"

	# One socket per protocol and family, so each rule is checked on
	# its own and the local address is printed as the client used it.
	ns_server tcp4 "$srv" -p 8080
	ns_server tcp6 "$srv" -6 -V -p 8080
	ns_server udp4 "$srv" -u -p 5353
	ns_server udp6 "$srv" -6 -V -u -p 5353
	ip netns exec "$srv" "$PORTCTL" -4 add tcp 80 to pid "$tcp4_pid" fd "$tcp4_fd"
	ip netns exec "$srv" "$PORTCTL" -6 add tcp 80 to pid "$tcp6_pid" fd "$tcp6_fd"
	ip netns exec "$srv" "$PORTCTL" -4 add udp 53 to pid "$udp4_pid" fd "$udp4_fd"
	ip netns exec "$srv" "$PORTCTL" -6 add udp 53 to pid "$udp6_pid" fd "$udp6_fd"

	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -a 198.18.0.2 -p 80
	check_match "$out" '^connected local=198\.18\.0\.1:[0-9]+ peer=198\.18\.0\.2:80$' "TCP/IPv4 client"
	accepted "$tcp4_out" '^accept local=198\.18\.0\.2:80 peer=198\.18\.0\.1:'

	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -6 -a 2001:db8::2 -p 80
	check_match "$out" '^connected local=\[2001:db8::1\]:[0-9]+ peer=\[2001:db8::2\]:80$' "TCP/IPv6 client"
	accepted "$tcp6_out" '^accept local=\[2001:db8::2\]:80 peer=\[2001:db8::1\]:'

	# The reply comes from port 5353, which the client's connected
	# socket does not take: "sent" is all it can say. The server's
	# line is what counts.
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -u -a 198.18.0.2 -p 53 -w 200
	accepted "$udp4_out" '^recv local=198\.18\.0\.2:53 peer=198\.18\.0\.1:[0-9]+ len=16$'

	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -6 -u -a 2001:db8::2 -p 53 -w 200
	accepted "$udp6_out" '^recv local=\[2001:db8::2\]:53 peer=\[2001:db8::1\]:[0-9]+ len=16$'

	# Each flow went to its own family's socket, and only there.
	check_eq "$(grep -c '^accept' "$tcp4_out")" 1 "connections the IPv4 server accepted"
	check_eq "$(grep -c '^accept' "$tcp6_out")" 1 "connections the IPv6 server accepted"
	check_eq "$(grep -c '^recv' "$udp4_out")" 1 "datagrams the IPv4 UDP server got"
	check_eq "$(grep -c '^recv' "$udp6_out")" 1 "datagrams the IPv6 UDP server got"
}

test_isolation()
{
	local cli srv cli2 other

	setup_ns cli srv cli2 other
	client_server "$cli" "$srv"
	client_server "$cli2" "$other"	# the same addresses, no rules

	ns_server srv "$srv" -p 8080
	ip netns exec "$srv" "$PORTCTL" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -a 198.18.0.2 -p 80
	accepted "$srv_out" '^accept local=198\.18\.0\.2:80 peer=198\.18\.0\.1:'

	# The same packets in the other namespace meet no rule.
	expect_status 3 ip netns exec "$cli2" "$PD_BIN/pdsock" connect -a 198.18.0.2 -p 80
	check_eq "$out" refused "connection to port 80 of the namespace without rules"
	expect_status 3 ip netns exec "$cli2" "$PD_BIN/pdsock" connect -6 -a 2001:db8::2 -p 80
	check_eq "$out" refused "IPv6 connection to port 80 of the namespace without rules"

	# Each namespace lists its own table, and only its own.
	expect_status 0 ip netns exec "$other" "$PORTCTL" list
	check_eq "$out" "" "portctl list in the namespace without rules"
	expect_status 0 ip netns exec "$cli" "$PORTCTL" list
	check_eq "$out" "" "portctl list in the client namespace"
	expect_status 0 "$PORTCTL" list
	check_no_match "$out" "pid $srv_pid " "portctl list in the initial namespace"
	expect_status 0 ip netns exec "$srv" "$PORTCTL" list
	check_match "$out" "^tcp 80 .*pid $srv_pid .*fd $srv_fd " "portctl list in the server namespace"
	check_eq "$(echo "$out" | wc -l)" 1 "rules listed in the server namespace"

	# The same rule in the other table neither conflicts with the first
	# nor changes where the first namespace's connections go.
	ns_server oth "$other" -p 8081
	expect_status 0 ip netns exec "$other" "$PORTCTL" add tcp 80 to port 8081
	expect_status 0 ip netns exec "$cli2" "$PD_BIN/pdsock" connect -a 198.18.0.2 -p 80
	accepted "$oth_out" '^accept local=198\.18\.0\.2:80 peer=198\.18\.0\.1:'
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -a 198.18.0.2 -p 80
	check_eq "$(grep -c '^accept' "$srv_out")" 2 "connections the first server accepted"
	check_eq "$(grep -c '^accept' "$oth_out")" 1 "connections the second server accepted"
}

test_target_in_other_netns()
{
	local A B

	setup_ns A B
	ns_server srv "$A" -b 127.0.0.1 -p 8080

	# portctl in B can take a copy of the socket (root may), but the
	# socket lives in A: B's table must refuse it.
	expect_status 1 ip netns exec "$B" "$PORTCTL" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
	check_match "$out" "^Error: .*another network namespace" "portctl add in B with A's socket"
	expect_status 0 ip netns exec "$B" "$PORTCTL" list
	check_eq "$out" "" "B's table after the refusal"
	expect_status 0 ip netns exec "$A" "$PORTCTL" list
	check_eq "$out" "" "A's table after the refusal"

	# The very same command is fine where the socket lives.
	expect_status 0 ip netns exec "$A" "$PORTCTL" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
}

test_delete_netns_with_rules()
{
	local cli srv ino pids

	setup_ns cli srv
	client_server "$cli" "$srv"
	dmesg_mark

	# Socket and port targets, TCP and UDP, and connections that stay
	# open until the namespace goes.
	spawn_server echo ip netns exec "$srv" python3 -c "$PY_ECHO_SERVER" -4 8080 8081
	ns_server udp "$srv" -u -p 5353
	ip netns exec "$srv" "$PORTCTL" add tcp 80 to pid "$echo_pid" fd "$echo_fd"
	ip netns exec "$srv" "$PORTCTL" add tcp 81 to port 8081
	ip netns exec "$srv" "$PORTCTL" add udp 53 to pid "$udp_pid" fd "$udp_fd"
	ip netns exec "$srv" "$PORTCTL" add udp 54 to port 5353

	spawn_chatter conns 2 ip netns exec "$cli" python3 -c "$PY_CHATTER" \
		198.18.0.2 80 198.18.0.2 81
	accepted "$echo_out" '^accept local=198\.18\.0\.2:80 '
	accepted "$echo_out" '^accept local=198\.18\.0\.2:81 '
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -u -a 198.18.0.2 -p 53 -w 100
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -u -a 198.18.0.2 -p 54 -w 100
	accepted "$udp_out" '^recv local=198\.18\.0\.2:53 '
	accepted "$udp_out" '^recv local=198\.18\.0\.2:54 '
	expect_status 0 ip netns exec "$srv" "$PORTCTL" list
	check_eq "$(echo "$out" | wc -l)" 4 "rules before the namespace goes: $out"

	ino=$(ns_inode "$srv")
	pids=$(ip netns pids "$srv")
	[ -n "$pids" ] || fail "no process in the server namespace"
	# shellcheck disable=SC2086
	kill $pids
	ip netns del "$srv"

	busywait 20000 _no_procs_in "$ino" ||
		fail "processes still in the deleted namespace: $(procs_in_netns "$ino")"
	if ip netns list | grep -qw "$srv"; then
		fail "ip netns still lists $srv"
	fi
	# The namespace is really dismantled (not kept alive by a reference
	# to one of its sockets) when its end of the veth pair goes, and
	# takes the client's end with it.
	busywait 30000 _link_gone "$cli" c-s ||
		fail "the deleted namespace was not dismantled: its veth peer is still there"
	dmesg_check_clean
}

_no_procs_in()
{
	[ -z "$(procs_in_netns "$1")" ]
}

test_forwarded_untouched()
{
	local cli rtr srv

	setup_ns cli rtr srv
	veth_link "$cli" c-r "$rtr" r-c
	veth_link "$rtr" r-s "$srv" s-r
	addr "$cli" c-r 198.18.0.1/24 2001:db8::1/64
	addr "$rtr" r-c 198.18.0.2/24 2001:db8::2/64
	addr "$rtr" r-s 198.18.1.1/24 2001:db8:1::1/64
	addr "$srv" s-r 198.18.1.2/24 2001:db8:1::2/64
	ip -n "$cli" route add default via 198.18.0.2
	ip -n "$cli" -6 route add default via 2001:db8::2
	ip -n "$srv" route add default via 198.18.1.1
	ip -n "$srv" -6 route add default via 2001:db8:1::1
	ip netns exec "$rtr" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	# A dropped SYN fails in seconds, not minutes.
	ip netns exec "$cli" sysctl -qw net.ipv4.tcp_syn_retries=2

	# srv: the real listeners on 80 and 53.
	ns_server s4 "$srv" -p 80
	ns_server s6 "$srv" -6 -V -p 80
	ns_server su4 "$srv" -u -p 53
	ns_server su6 "$srv" -6 -V -u -p 53
	# rtr: rules for 80 and 53 with no destination: they cover every
	# address, forwarded ones included, as far as the table goes.
	ns_server r4 "$rtr" -p 8080
	ns_server r6 "$rtr" -6 -V -p 8080
	ns_server ru4 "$rtr" -u -p 5353
	ns_server ru6 "$rtr" -6 -V -u -p 5353
	ip netns exec "$rtr" "$PORTCTL" -4 add tcp 80 to pid "$r4_pid" fd "$r4_fd"
	ip netns exec "$rtr" "$PORTCTL" -6 add tcp 80 to pid "$r6_pid" fd "$r6_fd"
	ip netns exec "$rtr" "$PORTCTL" -4 add udp 53 to pid "$ru4_pid" fd "$ru4_fd"
	ip netns exec "$rtr" "$PORTCTL" -6 add udp 53 to pid "$ru6_pid" fd "$ru6_fd"

	# Through the router: srv's own sockets answer, with their own
	# addresses; the router's targets see nothing.
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -a 198.18.1.2 -p 80
	check_match "$out" '^connected .* peer=198\.18\.1\.2:80$' "forwarded TCP/IPv4 connection"
	accepted "$s4_out" '^accept local=198\.18\.1\.2:80 peer=198\.18\.0\.1:'
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -6 -a 2001:db8:1::2 -p 80
	check_match "$out" '^connected .* peer=\[2001:db8:1::2\]:80$' "forwarded TCP/IPv6 connection"
	accepted "$s6_out" '^accept local=\[2001:db8:1::2\]:80 peer=\[2001:db8::1\]:'
	# srv's UDP servers answer from port 53 itself: the client hears it.
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -u -a 198.18.1.2 -p 53 -w 5000
	check_eq "$out" replied "forwarded UDP/IPv4 datagram"
	accepted "$su4_out" '^recv local=198\.18\.1\.2:53 peer=198\.18\.0\.1:'
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -6 -u -a 2001:db8:1::2 -p 53 -w 5000
	check_eq "$out" replied "forwarded UDP/IPv6 datagram"
	accepted "$su6_out" '^recv local=\[2001:db8:1::2\]:53 peer=\[2001:db8::1\]:'

	# To the router itself: steered to the router's targets.
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -a 198.18.0.2 -p 80
	accepted "$r4_out" '^accept local=198\.18\.0\.2:80 peer=198\.18\.0\.1:'
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -6 -a 2001:db8::2 -p 80
	accepted "$r6_out" '^accept local=\[2001:db8::2\]:80 peer=\[2001:db8::1\]:'
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -u -a 198.18.0.2 -p 53 -w 200
	accepted "$ru4_out" '^recv local=198\.18\.0\.2:53 peer=198\.18\.0\.1:'
	expect_status 0 ip netns exec "$cli" "$PD_BIN/pdsock" connect -6 -u -a 2001:db8::2 -p 53 -w 200
	accepted "$ru6_out" '^recv local=\[2001:db8::2\]:53 peer=\[2001:db8::1\]:'

	# Exactly one flow each, on both sides: nothing forwarded was taken.
	local o
	for o in "$s4_out" "$s6_out" "$r4_out" "$r6_out"; do
		check_eq "$(grep -c '^accept' "$o")" 1 "connections accepted by the server writing $o"
	done
	for o in "$su4_out" "$su6_out" "$ru4_out" "$ru6_out"; do
		check_eq "$(grep -c '^recv' "$o")" 1 "datagrams received by the server writing $o"
	done
	# ... and the router's rules counted only their own flows as steered.
	expect_status 0 ip netns exec "$rtr" "$PORTCTL" -s list
	check_eq "$(echo "$out" | grep -cE ' steered 1 undeliverable 0( replies [0-9]+)?$')" 4 \
		"router's rules that steered exactly one flow: $out"
}

ktap_plan 5
run_test "TCP and UDP, IPv4 and IPv6, steered across a veth pair, unNATed" test_steer_across_veth
run_test "a namespace without rules is untouched by another's and lists nothing" test_isolation
run_test "a target socket in another namespace is refused (EXDEV)" test_target_in_other_netns
run_test "deleting a namespace with rules and open connections" test_delete_netns_with_rules
run_test "forwarded traffic is not steered by the router's rules" test_forwarded_untouched
ktap_finish
