#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A lone add, delete or replace of one prefix rule, beside many prefixes
# of its length on its port, is written into the published table in place
# instead of rebuilding the port's rules. These tests check that such
# changes reach packets exactly as a rebuild would, including past the
# group's room (which rebuilds it) and a prefix deleted and added again.
# In one namespace, every address of 10.1.0.0/16 and 2001:db8:1::/64
# local on loopback:
#
#   connect 10.1.0.K:5000 --> rule "tcp 5000 dst 10.1.0.K/32" --> port 6001 (A)
#                                                             \-> port 6002 (B)

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

NS=

pc() { ip netns exec "$NS" "$PORTCTL" "$@"; }

setup()
{
	setup_ns NS
	ip -n "$NS" addr add 10.1.0.1/16 dev lo
	ip -n "$NS" -6 route add local 2001:db8:1::/64 dev lo
	ns_server A "$NS" -p 6001
	ns_server B "$NS" -p 6002
}

# connect_to ADDR STATUS: pdsock connect to ADDR port 5000 exits STATUS.
connect_to()
{
	local fam=()

	[[ $1 == *:* ]] && fam=(-6)
	expect_status "$2" ip netns exec "$NS" "$PD_BIN/pdsock" connect \
		"${fam[@]}" -a "$1" -p 5000
}

# lands ADDR SERVER: a connection to ADDR port 5000 is accepted by SERVER.
lands()
{
	local log

	connect_to "$1" 0
	log=${2}_out
	wait_line "${!log}" "^accept local=\\[?${1//./\\.}\\]?:5000 " ||
		fail "a connection to $1 did not reach server $2"
}

# refused_at ADDR: nothing takes a connection to ADDR port 5000.
refused_at()
{
	connect_to "$1" 3
}

# Rules 10.1.0.1 .. 10.1.0.N, added one request at a time.
add_one_by_one()
{
	local i

	for ((i = 1; i <= $1; i++)); do
		pc add tcp 5000 dst "10.1.0.$i/32" to port 6001 ||
			fail "lone add of 10.1.0.$i failed"
	done
}

test_lone_adds()
{
	setup
	# Past the size at which a group is hashed (8) and past its first
	# room (12), so both the in-place path and its rebuild are taken.
	add_one_by_one 40
	lands 10.1.0.1 A
	lands 10.1.0.9 A
	lands 10.1.0.13 A
	lands 10.1.0.40 A
	refused_at 10.1.0.41
	check_eq "$(pc list | grep -c 'tcp 5000 ipv4 dst 10\.1\.0\.')" 40 "rules listed"
}

test_lone_replace_and_delete()
{
	setup
	add_one_by_one 40
	pc replace tcp 5000 dst 10.1.0.20/32 to port 6002
	lands 10.1.0.20 B
	lands 10.1.0.21 A
	pc del tcp 5000 dst 10.1.0.30/32
	refused_at 10.1.0.30
	lands 10.1.0.31 A
	# The deleted prefix comes back, to the other server.
	pc add tcp 5000 dst 10.1.0.30/32 to port 6002
	lands 10.1.0.30 B
	check_match "$(pc list)" 'tcp 5000 ipv4 dst 10\.1\.0\.30/32 -> port 6002' "list"
	check_match "$(pc list)" 'tcp 5000 ipv4 dst 10\.1\.0\.20/32 -> port 6002' "list"
}

# Deletions down to the size where a group is scanned again, then back.
test_lone_deletes_shrink()
{
	local i

	setup
	add_one_by_one 24
	for ((i = 1; i <= 20; i++)); do
		pc del tcp 5000 dst "10.1.0.$i/32" || fail "lone del of 10.1.0.$i failed"
	done
	refused_at 10.1.0.1
	refused_at 10.1.0.20
	lands 10.1.0.21 A
	lands 10.1.0.24 A
	check_eq "$(pc list | grep -c 'tcp 5000 ipv4 dst')" 4 "rules listed"
	add_one_by_one 12
	lands 10.1.0.5 A
	check_eq "$(pc list | grep -c 'tcp 5000 ipv4 dst')" 16 "rules listed"
}

# IPv6 prefixes take the same path, with their own hash.
test_lone_changes_ipv6()
{
	local i

	setup
	ns_server A6 "$NS" -6 -V -p 6001
	ns_server B6 "$NS" -6 -V -p 6002
	for ((i = 1; i <= 20; i++)); do
		pc add tcp 5000 dst "2001:db8:1::$i/128" to port 6001
	done
	lands 2001:db8:1::1 A6
	lands 2001:db8:1::20 A6
	pc replace tcp 5000 dst 2001:db8:1::7/128 to port 6002
	lands 2001:db8:1::7 B6
	pc del tcp 5000 dst 2001:db8:1::8/128
	refused_at 2001:db8:1::8
	lands 2001:db8:1::9 A6
}

ktap_plan 4
run_test "lone adds beside a hashed prefix group reach packets" test_lone_adds
run_test "a lone replace and delete in a hashed group reach packets" test_lone_replace_and_delete
run_test "lone deletes shrink a group and adds grow it back" test_lone_deletes_shrink
run_test "lone IPv6 prefix changes reach packets" test_lone_changes_ipv6
ktap_finish
