#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A rule of several targets (issue 15), shown with Debian's own programs,
# unmodified: a canary release of nginx, and two dnsmasq sharing port 53.
#
#   +-- S -------------------------------------------------------------+
#   | nginx "old" on 8080, nginx "new" on 8081 (as nobody)             |
#   | tcp 80 -> port 8080 weight 9, port 8081 weight 1; then 1:1; then |
#   |   the new one alone: curl, a fresh connection per request        |
#   | dnsmasq on 5353 (A 198.18.0.53) and on 5354 (A 198.18.0.54)      |
#   | udp 53 -> port 5353, port 5354: dig, a fresh port per query      |
#   +------------------------------------------------------------------+
#
# Shares are checked against the weights with bounds that a fair split
# leaves with a chance below one in a million, so a failure is a fault.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

require_cmd nginx curl dnsmasq dig ss setpriv

# Requests a figure: enough to tell 9:1 from 1:1 from 1:0 at once.
N=200

setup_ns S

# tcp_listening PORT: something listens on PORT in S.
tcp_listening()
{
	[ -n "$(ip netns exec "$S" ss -Htln "sport = :$1")" ]
}

udp_bound()
{
	[ -n "$(ip netns exec "$S" ss -Huln "sport = :$1")" ]
}

# nginx_start PORT PAGE: an nginx in S serving PAGE on PORT, listening.
nginx_start()
{
	nginx_serve "$S" "$2" "$1"
	busywait "$START_MS" tcp_listening "$1" ||
		fail "nginx did not listen on $1: $(cat "$NGINX_DIR/out" "$NGINX_DIR/error.log" 2>&1)"
}

# dnsmasq_start PORT ADDRESS: a dnsmasq in S answering portdispatch.test
# A ADDRESS on PORT, no configuration, no upstream.
dnsmasq_start()
{
	local log

	log=$(mktemp)
	defer rm -f "$log"
	ip netns exec "$S" dnsmasq --keep-in-foreground -C /dev/null -u nobody -g nogroup \
		--port "$1" --no-resolv --no-hosts --address=/portdispatch.test/"$2" \
		> "$log" 2>&1 &
	defer kill $!
	busywait "$START_MS" udp_bound "$1" || fail "dnsmasq did not bind $1: $(cat "$log")"
}

# pages: N requests to port 80 of S, each on a connection of its own
# (the server closes it); the pages' counts as "old=X new=Y", and every
# request must have been answered.
pages()
{
	local urls=() out old=0 new=0 line i

	for i in $(seq "$N"); do
		urls+=("http://127.0.0.1/?$i")
	done
	out=$(ip netns exec "$S" curl -sS --max-time $((60 * PD_TIME_SCALE)) \
		-H 'Connection: close' "${urls[@]}" 2>&1) || fail "curl: $out"
	while IFS= read -r line; do
		case $line in
		old) old=$((old + 1)) ;;
		new) new=$((new + 1)) ;;
		*) fail "curl got '$line'" ;;
		esac
	done <<< "$out"
	check_eq $((old + new)) "$N" "pages answered"
	PAGES="old=$old new=$new"
	OLD=$old NEW=$new
	echo "pages: $PAGES"
}

# between WHAT VALUE LOW HIGH
between()
{
	[ "$2" -ge "$3" ] && [ "$2" -le "$4" ] ||
		fail "$1: $2, not within $3-$4"
}

# member_stat PORT TARGET-PORT KEY: a counter of one target of the rule on
# PORT, from portctl -s list.
member_stat()
{
	local line re="^(tcp|udp) $1 .*port $2 weight [0-9]+ [^,;]*$3 ([0-9]+)"

	while IFS= read -r line; do
		[[ $line =~ $re ]] && { echo "${BASH_REMATCH[2]}"; return; }
	done <<< "$(pcn "$S" -s list)"
	fail "no $3 of target port $2 of the rule on $1 in: $(pcn "$S" -s list)"
}

nginx_start 8080 old
nginx_start 8081 new
dnsmasq_start 5353 198.18.0.53
dnsmasq_start 5354 198.18.0.54

# 9:1 over 200 connections: 20 expected at 8081, sd 4.2.
test_canary()
{
	pcn "$S" add tcp 80 to port 8080 weight 9, port 8081 weight 1
	defer pcn "$S" flush
	pages
	between "connections to the new server of 9:1 ($PAGES)" "$NEW" 1 45
	check_eq "$(member_stat 80 8080 steered)" "$OLD" "steered to 8080"
	check_eq "$(member_stat 80 8081 steered)" "$NEW" "steered to 8081"
	check_eq "$(rule_stat 80 steered "$S")" "$N" "steered by the rule"
}

# The release goes on: one replace at a time, and no request fails.
test_canary_moves()
{
	pcn "$S" add tcp 80 to port 8080 weight 9, port 8081 weight 1
	defer pcn "$S" flush
	pages
	pcn "$S" replace tcp 80 to port 8080 weight 1, port 8081 weight 1
	pages
	between "connections to the new server of 1:1 ($PAGES)" "$NEW" 65 135
	pcn "$S" replace tcp 80 to port 8081
	pages
	check_eq "$PAGES" "old=0 new=$N" "the new server alone"
	check_eq "$(rule_stat 80 steered "$S")" $((3 * N)) "steered by the rule, across replaces"
}

# A member whose server stopped is passed over: every request is answered.
test_stopped_skipped()
{
	local pid

	nginx_start 8082 gone
	pid=$NGINX_PID
	pcn "$S" add tcp 80 to port 8080, port 8082
	defer pcn "$S" flush
	kill "$pid"
	busywait "$START_MS" eval '! tcp_listening 8082' || fail "nginx on 8082 did not stop"
	pages
	check_eq "$PAGES" "old=$N new=0" "pages with 8082 stopped"
	between "flows passed over by 8082" "$(member_stat 80 8082 undeliverable)" 65 135
	check_eq "$(rule_stat 80 undeliverable "$S")" 0 "undeliverable by the rule"
}

# Two dnsmasq on one port: each query (dig takes a fresh source port for
# each) reaches one of them, and its answer comes back from port 53, or
# dig would not take it.
test_dns_pair()
{
	local f out a53=0 a54=0 line i

	pcn "$S" add udp 53 to port 5353, port 5354
	defer pcn "$S" flush
	f=$(mktemp)
	defer rm -f "$f"
	for i in $(seq "$N"); do
		echo "@127.0.0.1 portdispatch.test A +short +tries=1 +time=$((5 * PD_TIME_SCALE))"
	done > "$f"
	out=$(ip netns exec "$S" dig -f "$f" 2>&1) || fail "dig -f: $out"
	while IFS= read -r line; do
		case $line in
		198.18.0.53) a53=$((a53 + 1)) ;;
		198.18.0.54) a54=$((a54 + 1)) ;;
		*) fail "dig got '$line'" ;;
		esac
	done <<< "$out"
	echo "answers: 5353 $a53, 5354 $a54"
	check_eq $((a53 + a54)) "$N" "answers"
	between "answers from 5354 of 1:1 (5353: $a53)" "$a54" 65 135
	check_eq "$(rule_stat 53 replies "$S")" "$N" "replies sent from port 53"
}

ktap_plan 4
run_test "curl through 9:1 to two nginx: about a tenth at the canary, counted per target" test_canary
run_test "replace moves the split to 1:1, then to the canary alone, losing no request" test_canary_moves
run_test "a target with its nginx stopped is passed over, and no request fails" test_stopped_skipped
run_test "dig through two dnsmasq on port 53: both answer, every answer from port 53" test_dns_pair
ktap_finish
