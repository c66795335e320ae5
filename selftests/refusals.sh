#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Bad input is refused with the kernel's own explanation, which portctl
# prints as one sentence ("Error: ....", exit 1), and nothing changes:
#
#   portctl add ... --netlink--> portdispatch: refuses, with an extended ack
#      "Error: port 70000 is out of range 1-65535."  <--------'
#
# Each case runs in a fresh namespace holding one rule, which must be the
# only rule afterwards.

. "$(dirname "$0")/lib.sh"

NS=
SRV_PID=
SRV_FD=
USRV_PID=
USRV_FD=

pc() { ip netns exec "$NS" "$PORTCTL" "$@"; }

setup()
{
	local out

	setup_ns NS
	out=$(mktemp)
	defer rm -f "$out"
	ip netns exec "$NS" "$PD_BIN/pdsock" serve -b 127.0.0.1 -p 8080 > "$out" &
	defer kill $!
	busywait "$START_MS" grep -q '^ready' "$out" || fail "TCP server did not start"
	SRV_PID=$(sed -n 's/^ready pid=\([0-9]*\).*/\1/p' "$out")
	SRV_FD=$(sed -n 's/^ready.* fd=\([0-9]*\).*/\1/p' "$out")
	pc add tcp 7 to port 8080
}

# refused "WHAT THE MESSAGE MUST SAY (regex)" PORTCTL-ARGS...
refused()
{
	local want=$1 before

	shift
	before=$(pc list)
	expect_status 1 pc "$@"
	check_match "$out" "^Error: $want\\.\$" "portctl $*"
	check_eq "$(printf '%s\n' "$out" | wc -l)" 1 "lines of 'portctl $*'"
	check_eq "$(pc list)" "$before" "the table after 'portctl $*'"
}

test_ports()
{
	setup
	refused "port 0 is out of range 1-65535" add tcp 0 to port 8080
	refused "port 70000 is out of range 1-65535" add tcp 70000 to port 8080
	refused "port 70000 is out of range 1-65535" add tcp 80-70000 to port 8080
	refused "port range 90-80 is reversed" add tcp 90-80 to port 8080
	refused "target port 70000 is out of range 1-65535" add tcp 80 to port 70000
}

test_prefixes()
{
	setup
	refused "prefix length 33 is longer than the address \\(32 bits\\)" add tcp 80 dst 198.18.0.0/33 to port 8080
	refused "prefix length 129 is longer than the address \\(128 bits\\)" add tcp 80 dst 2001:db8::/129 to port 8080
	refused "the destination has bits set past its /24 prefix" add tcp 80 dst 198.18.0.1/24 to port 8080
}

test_sockets()
{
	local plain_pid

	setup
	refused "fd $SRV_FD of process $SRV_PID is TCP, the rule is UDP" add udp 53 to pid "$SRV_PID" fd "$SRV_FD"
	refused "fd $SRV_FD of process $SRV_PID is IPv4 and cannot take IPv6 flows" -6 add tcp 80 to pid "$SRV_PID" fd "$SRV_FD"
	refused "fd $SRV_FD of process $SRV_PID is IPv4 and cannot take IPv6 flows" add tcp 80 dst 2001:db8::/32 to pid "$SRV_PID" fd "$SRV_FD"
	# A process whose fd 0 is a file, not a socket.
	ip netns exec "$NS" sleep 30 < /dev/null &
	plain_pid=$!
	defer kill "$plain_pid"
	refused "fd 0 of process $plain_pid is not a socket" add tcp 80 to pid "$plain_pid" fd 0
	refused "no process with pid 4194304" add tcp 80 to pid 4194304 fd 3
	refused "process $SRV_PID has no fd 99" add tcp 80 to pid "$SRV_PID" fd 99
}

test_conflicts()
{
	setup
	refused "tcp 7 overlaps the rule tcp 7" add tcp 7 to port 8081
	refused "tcp 1-10 overlaps the rule tcp 7" add tcp 1-10 to port 8081
	refused "no rule tcp 8" del tcp 8
	refused "no rule tcp 5-9; tcp 7 covers it" del tcp 5-9
	# The longest description there is still comes through whole.
	pc add tcp 65000-65535 dst 2001:db8:1234:5678:9abc:def0:1234:5678 to port 8080
	refused "overlaps tcp 65000-65535 dst 2001:db8:1234:5678:9abc:def0:1234:5678/128" \
		add tcp 65000-65535 dst 2001:db8:1234:5678:9abc:def0:1234:5678/128 to port 8081
}

test_table_limit()
{
	require_root
	setup
	set_param max_rules 2
	pc add tcp 8 to port 8080
	refused "this namespace.s table is full \\(max_rules=2\\)" add tcp 9 to port 8080
}

ktap_plan 5
run_test "out-of-range and reversed ports are refused with a sentence" test_ports
run_test "impossible prefixes are refused with a sentence" test_prefixes
run_test "sockets that cannot serve the rule are refused with a sentence" test_sockets
run_test "conflicts and missing rules name the rule concerned" test_conflicts
run_test "the table's size limit is a module parameter" test_table_limit
ktap_finish
