#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# shellcheck disable=SC2154 # spawn_server sets VAR_pid, VAR_fd and VAR_out
# Counters move when, and only when, they should. In one namespace, over
# loopback:
#
#   client --> :9000  normal listener, no rule      -> misses only
#   client --> :80    rule -> port 8080 (listening) -> steered +1 a flow
#   client --> :81    rule -> port 8081 (nothing)   -> undeliverable +1
#
# Namespace: lookups = hits + misses, every TCP/UDP packet that consulted
# the table; none at all while the namespace has no rule (no hooks).
# Rule: steered and undeliverable count new flows, not packets; for UDP
# every datagram that no connected socket owns is a new flow. A UDP rule
# counts replies from 0; a TCP rule has no such counter. The namespace's
# UDP flows (remembered, missed) start at 0 under the max_udp_flows param.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

NS=

pc() { ip netns exec "$NS" "$PORTCTL" "$@"; }

# The counters are read from portctl's text with bash alone (ns_stat,
# rule_stat): a python3 per read made this test the slowest of all on the
# debug kernel. Their JSON form is portctl.sh's business.

serve()
{
	local out

	out=$(mktemp)
	defer rm -f "$out"
	ip netns exec "$NS" "$PD_BIN/pdsock" serve "$@" > "$out" &
	defer kill $!
	busywait "$START_MS" grep -q '^ready' "$out" || fail "server did not start"
}

connect()
{
	ip netns exec "$NS" "$PD_BIN/pdsock" connect "$@"
}

setup()
{
	setup_ns NS
	serve -b 127.0.0.1 -p 9000
	serve -b 127.0.0.1 -p 8080
}

test_no_rules_no_lookups()
{
	setup
	connect -a 127.0.0.1 -p 9000 > /dev/null
	check_eq "$(ns_stat lookups)" 0 "lookups in a namespace without rules"
	check_eq "$(ns_stat hits)" 0 "hits in a namespace without rules"
	check_eq "$(ns_stat misses)" 0 "misses in a namespace without rules"
	check_eq "$(ns_stat udp_flows)" 0 "UDP flows in a namespace without rules"
	check_eq "$(ns_stat udp_flows_missed)" 0 "UDP flows missed in a namespace without rules"
	check_eq "$(ns_stat max_udp_flows)" "$(cat "$PD_PARAMS/max_udp_flows")" \
		"the UDP flows' limit"
}

test_miss_counts_only_misses()
{
	local l0 h0 m0

	setup
	pc add tcp 80 to port 8080
	l0=$(ns_stat lookups) h0=$(ns_stat hits) m0=$(ns_stat misses)

	connect -a 127.0.0.1 -p 9000 > /dev/null
	[ "$(ns_stat misses)" -gt "$m0" ] || fail "misses did not move"
	check_eq "$(ns_stat hits)" "$h0" "hits after traffic to an uncovered port"
	check_eq "$(rule_stat 80 steered)" 0 "steered after traffic elsewhere"
	check_eq "$(ns_stat lookups)" $(($(ns_stat hits) + $(ns_stat misses))) "lookups = hits + misses"
	[ "$(ns_stat lookups)" -gt "$l0" ] || fail "lookups did not move"
}

test_steered_counts_flows_not_packets()
{
	local h0 h1 i

	setup
	pc add tcp 80 to port 8080
	h0=$(ns_stat hits)
	for i in 1 2 3; do
		connect -a 127.0.0.1 -p 80 > /dev/null || fail "connection $i not steered"
	done
	check_eq "$(rule_stat 80 steered)" 3 "steered after three connections"
	check_eq "$(rule_stat 80 undeliverable)" 0 "undeliverable after three steered connections"
	check_eq "$(rule_stat 80 replies)" "" "replies of a TCP rule"
	h1=$(ns_stat hits)
	# Each connection sends a SYN, an ACK and more to port 80: hits are packets.
	[ "$h1" -ge $((h0 + 6)) ] || fail "hits moved from $h0 to $h1 for three connections"
	check_eq "$(ns_stat lookups)" $(($(ns_stat hits) + $(ns_stat misses))) "lookups = hits + misses"
}

test_established_packets_are_hits_only()
{
	local conn go h0

	setup_ns NS
	serve -k -b 127.0.0.1 -p 8080
	pc add tcp 80 to port 8080
	conn=$(mktemp)
	go=$(mktemp -u)
	mkfifo "$go"
	defer rm -f "$conn" "$go"
	# A steered connection that sends data only once told to.
	ip netns exec "$NS" python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", 80))
print("open", flush=True)
open(sys.argv[1]).readline()
for _ in range(5):
    s.send(b"x" * 100)
    time.sleep(0.05)
print("sent", flush=True)
time.sleep(5)' "$go" > "$conn" &
	defer kill $!
	busywait "$START_MS" grep -q open "$conn" || fail "no connection"
	check_eq "$(rule_stat 80 steered)" 1 "steered after one connection"
	h0=$(ns_stat hits)
	echo go > "$go"
	busywait 10000 grep -q sent "$conn" || fail "data not sent"
	[ "$(ns_stat hits)" -gt "$h0" ] || fail "data on an established flow did not count as hits"
	check_eq "$(rule_stat 80 steered)" 1 "steered after data on the established flow"
}

test_undeliverable()
{
	setup
	pc add tcp 81 to port 8081
	expect_status 3 ip netns exec "$NS" "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 81
	check_eq "$(rule_stat 81 undeliverable)" 1 "undeliverable after one refused connection"
	check_eq "$(rule_stat 81 steered)" 0 "steered with nothing on the target port"
}

# UDP has no flow state in the module: every datagram that no connected
# socket owns is a new flow, steered and counted on its own, however many
# come on one 4-tuple. Three clients, each a connected socket sending four
# datagrams: twelve datagrams on three 4-tuples count twelve, not three.
test_udp_counts_datagrams()
{
	local flows=3 per=4 h0 i line peer
	local re='^recv local=127\.0\.0\.1:53 peer=(127\.0\.0\.1:[0-9]+) '
	local -A got=()

	setup_ns NS
	ns_server dns "$NS" -u -b 127.0.0.1 -p 5353
	pc add udp 53 to port 5353
	check_eq "$(rule_stat 53 replies)" 0 "replies of a UDP rule before any datagram"
	h0=$(ns_stat hits)
	for ((i = 0; i < flows; i++)); do
		connect -u -a 127.0.0.1 -p 53 -n "$per" -w 0 > /dev/null
	done
	busywait 5000 has_count "$dns_out" '^recv ' $((flows * per)) ||
		fail "the target got $REPLY of $((flows * per)) datagrams"

	# Every datagram reached port 53, each flow's from one source port.
	count_lines "$dns_out" "$re"
	check_eq "$REPLY" $((flows * per)) "datagrams to port 53 the target got"
	while IFS= read -r line; do
		[[ $line =~ $re ]] || continue
		peer=${BASH_REMATCH[1]}
		got[$peer]=$((${got[$peer]:-0} + 1))
	done < "$dns_out"
	check_eq "${#got[@]}" "$flows" "4-tuples the datagrams came on"
	for peer in "${!got[@]}"; do
		check_eq "${got[$peer]}" "$per" "datagrams on the 4-tuple of $peer"
	done

	check_eq "$(rule_stat 53 steered)" $((flows * per)) \
		"steered after $per datagrams on each of $flows 4-tuples"
	check_eq "$(rule_stat 53 undeliverable)" 0 "undeliverable after steered datagrams"
	check_eq "$(ns_stat hits)" $((h0 + flows * per)) "hits after $((flows * per)) datagrams"
}

test_replace_keeps_counters()
{
	setup
	serve -b 127.0.0.1 -p 8090
	pc add tcp 80 to port 8080
	connect -a 127.0.0.1 -p 80 > /dev/null
	connect -a 127.0.0.1 -p 80 > /dev/null
	pc replace tcp 80 to port 8090
	check_eq "$(rule_stat 80 steered)" 2 "steered right after replace"
	connect -a 127.0.0.1 -p 80 > /dev/null
	check_eq "$(rule_stat 80 steered)" 3 "steered after one more connection"
}

# 300 rules, each counted on every CPU in turn, share the CPUs' 64 counter
# slots: a rule's counts keep moving from a slot to its totals as others
# take the slot, and none may be lost or counted twice on the way.
test_counts_exact_with_shared_slots()
{
	local nrules=300 rounds=5 first=20000 f p line ok=0 bad=()
	local re='^udp ([0-9]+) any -> port 5353 steered ([0-9]+) undeliverable ([0-9]+)( replies [0-9]+)?$'

	setup_ns NS
	f=$(mktemp)
	defer rm -f "$f"
	for p in $(seq "$first" $((first + nrules - 1))); do
		echo "add udp $p to port 5353"
	done > "$f"
	pc -b "$f"

	# Round after round, one datagram to each rule's port, sent from each
	# CPU in turn; each must reach the socket on 5353 before the next.
	ip netns exec "$NS" python3 -c '
import os, socket, sys
first, n, rounds = map(int, sys.argv[1:4])
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 5353))
r.settimeout(5 * int(os.environ.get("PD_TIME_SCALE", "1")))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
cpus = sorted(os.sched_getaffinity(0))
for rnd in range(rounds):
    for i in range(n):
        os.sched_setaffinity(0, {cpus[(i + rnd) % len(cpus)]})
        s.sendto(b"x", ("127.0.0.1", first + i))
        try:
            r.recv(16)
        except socket.timeout:
            sys.exit(f"round {rnd}: the datagram to port {first + i} never reached port 5353")
print(f"{rounds * n} datagrams on {len(cpus)} CPUs, all steered")' "$first" "$nrules" "$rounds"

	while IFS= read -r line; do
		if [[ $line =~ $re ]] && [ "${BASH_REMATCH[2]}" -eq "$rounds" ] &&
		   [ "${BASH_REMATCH[3]}" -eq 0 ]; then
			ok=$((ok + 1))
		else
			bad+=("$line")
		fi
	done <<< "$(pc -s list)"
	[ "${#bad[@]}" -eq 0 ] ||
		fail "${#bad[@]} rules did not count $rounds steered datagrams, e.g. $(printf '[%s] ' "${bad[@]:0:5}")"
	check_eq "$ok" "$nrules" "rules that counted $rounds steered datagrams"
	check_eq "$(ns_stat hits)" $((nrules * rounds)) "hits in the namespace"
}

ktap_plan 8
run_test "a namespace without rules counts nothing" test_no_rules_no_lookups
run_test "traffic to an uncovered port moves misses and lookups only" test_miss_counts_only_misses
run_test "steered counts connections, hits count packets" test_steered_counts_flows_not_packets
run_test "packets of an established steered flow are hits, not new steering" test_established_packets_are_hits_only
run_test "a flow the target cannot take is undeliverable" test_undeliverable
run_test "every UDP datagram handed over is a steered flow, several on one 4-tuple too" test_udp_counts_datagrams
run_test "replace carries the rule's counters on" test_replace_keeps_counters
run_test "counts stay exact when many rules share the CPUs' counter slots" test_counts_exact_with_shared_slots
ktap_finish
