#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The event stream of a scripted sequence, as `portctl monitor` prints it
# (text) and as `portctl -j monitor` prints it (one JSON object a line),
# both listening at once in one namespace:
#
#   portctl add/replace/del/-b/flush  -->  module  --events-->  monitor
#   a target socket closes            -->  reaper  --events-->  monitor

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

NS=

pc() { ip netns exec "$NS" "$PORTCTL" "$@"; }

# Events sent before a monitor subscribed are not for it: poke the table
# until both monitors have heard something. Then the probe rule's
# deletion marks the end of the probing: a monitor prints events in
# order, so once both printed it, nothing of the probing is left to come,
# and the test starts from there.
wait_subscribed()
{
	busywait 10000 _both_heard "$1" "$2" || fail "the monitors heard nothing"
	pc del tcp 1
	wait_line "$1" '^deleted tcp 1 any -> port 2 ' 3000 ||
		fail "the text monitor did not print the probe's deletion: $(cat "$1")"
	wait_line "$2" '^\{"event":"deleted",.*"port_min":1,' 3000 ||
		fail "the JSON monitor did not print the probe's deletion: $(cat "$2")"
}

_both_heard()
{
	pc replace tcp 1 to port 2
	[ -s "$1" ] && [ -s "$2" ]
}

test_sequence()
{
	local text json batch srv_out pid fd skip_text skip_json

	setup_ns NS
	text=$(mktemp) json=$(mktemp) batch=$(mktemp) srv_out=$(mktemp)
	defer rm -f "$text" "$json" "$batch" "$srv_out"
	ip netns exec "$NS" "$PORTCTL" monitor > "$text" &
	defer kill $!
	ip netns exec "$NS" "$PORTCTL" -j monitor > "$json" &
	defer kill $!
	wait_subscribed "$text" "$json"
	skip_text=$(wc -l < "$text") skip_json=$(wc -l < "$json")

	pc add tcp 80 to port 8080
	pc replace tcp 80 to port 8081
	pc -4 add udp 53 dst 127.0.0.1 to port 5353
	pc del tcp 80
	printf 'add tcp 90 to port 9090\nadd tcp 91 to port 9091\n' > "$batch"
	pc -b "$batch"
	# One rule for both families takes the place of one rule for each.
	pc -4 add tcp 70 to port 7070
	pc -6 add tcp 70 to port 7071
	pc replace tcp 70 to port 7072
	pc flush
	ip netns exec "$NS" "$PD_BIN/pdsock" serve -b 127.0.0.1 -p 8080 > "$srv_out" &
	pid=$!
	defer kill "$pid"
	busywait "$START_MS" grep -q '^ready' "$srv_out" || fail "server did not start"
	fd=$(sed -n 's/^ready.* fd=\([0-9]*\).*/\1/p' "$srv_out")
	pc add tcp 80 to pid "$pid" fd "$fd"
	kill "$pid"
	busywait 3000 grep -q 'socket closed' "$text" || fail "no event for the closed socket"
	busywait 3000 grep -q socket_closed "$json" || fail "no JSON event for the closed socket"

	out=$(tail -n +$((skip_text + 1)) "$text")
	printf '%s\n' "$out"
	check_eq "$(printf '%s\n' "$out" | wc -l)" 13 "number of events"
	check_match "$(sed -n 1p <<< "$out")" '^added tcp 80 any -> port 8080$' "event 1"
	check_match "$(sed -n 2p <<< "$out")" '^replaced tcp 80 any -> port 8081$' "event 2"
	check_match "$(sed -n 3p <<< "$out")" '^added udp 53 ipv4 dst 127\.0\.0\.1/32 -> port 5353$' "event 3"
	check_match "$(sed -n 4p <<< "$out")" '^deleted tcp 80 any -> port 8081 .*requested' "event 4"
	check_match "$(sed -n 5p <<< "$out")" '^added tcp 90 any -> port 9090$' "event 5 (batch)"
	check_match "$(sed -n 6p <<< "$out")" '^added tcp 91 any -> port 9091$' "event 6 (batch)"
	check_match "$(sed -n 7p <<< "$out")" '^added tcp 70 ipv4 -> port 7070$' "event 7"
	check_match "$(sed -n 8p <<< "$out")" '^added tcp 70 ipv6 -> port 7071$' "event 8"
	check_match "$(sed -n 9p <<< "$out")" '^deleted tcp 70 ipv6 -> port 7071 \(replaced\)$' "event 9 (replace)"
	check_match "$(sed -n 10p <<< "$out")" '^replaced tcp 70 any -> port 7072$' "event 10 (replace)"
	check_match "$(sed -n 11p <<< "$out")" '^flushed 4 rules$' "event 11"
	check_match "$(sed -n 12p <<< "$out")" "^added tcp 80 ipv4 -> pid $pid \\(pdsock\\) fd $fd 127\\.0\\.0\\.1:8080 listening$" "event 12"
	check_match "$(sed -n 13p <<< "$out")" "^deleted tcp 80 ipv4 -> pid $pid \\(pdsock\\) fd $fd 127\\.0\\.0\\.1:8080 .*socket closed" "event 13"

	tail -n +$((skip_json + 1)) "$json" | python3 -c '
import json, sys
events = [json.loads(line) for line in sys.stdin]
got = [(e["event"], e.get("reason"), e.get("rule") and e["rule"]["port_min"], e.get("count")) for e in events]
want = [("added", None, 80, None), ("replaced", None, 80, None),
        ("added", None, 53, None), ("deleted", "requested", 80, None),
        ("added", None, 90, None), ("added", None, 91, None),
        ("added", None, 70, None), ("added", None, 70, None),
        ("deleted", "replaced", 70, None), ("replaced", None, 70, None),
        ("flushed", None, None, 4), ("added", None, 80, None),
        ("deleted", "socket_closed", 80, None)]
if got != want:
    sys.exit(f"JSON events {got}, expected {want}")
' || fail "the JSON event stream differs"
}

ktap_plan 1
run_test "monitor and monitor -j print a scripted sequence, in order" test_sequence
ktap_finish
