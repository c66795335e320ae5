#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The first steered connection, end to end, as a user does it:
#
#   client --SYN--> 127.0.0.1:80 (nothing bound)
#                       |  portctl add tcp 80 to pid PID fd FD
#                       v
#              server of pid PID, listening on 127.0.0.1:8080,
#              accepts it with local address 127.0.0.1:80 (no NAT)
#
# then `portctl list` shows the rule, `portctl del` removes it (the next
# connection is refused), and the module unloads with a rule installed and
# a connection open.

. "$(dirname "$0")/lib.sh"

# start_server VAR ARGS...: pdsock serve in the background; VAR_pid, VAR_fd
# and VAR_out (its output file) describe it.
start_server()
{
	local var=$1 out line

	shift
	out=$(mktemp)
	"$PD_BIN/pdsock" serve "$@" > "$out" &
	defer kill $!
	defer rm -f "$out"
	busywait "$START_MS" grep -q '^ready' "$out" || fail "server did not start"
	line=$(grep '^ready' "$out")
	eval "${var}_pid=$(echo "$line" | sed 's/.*pid=\([0-9]*\).*/\1/')"
	eval "${var}_fd=$(echo "$line" | sed 's/.*fd=\([0-9]*\).*/\1/')"
	eval "${var}_out=$out"
}

test_steer()
{
	start_server srv -b 127.0.0.1 -p 8080
	"$PORTCTL" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
	defer "$PORTCTL" flush

	expect_status 0 "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
	check_match "$out" '^connected local=127\.0\.0\.1:[0-9]+ peer=127\.0\.0\.1:80$' "client"
	busywait 2000 grep -q '^accept' "$srv_out" || fail "server accepted nothing"
	check_match "$(grep '^accept' "$srv_out")" '^accept local=127\.0\.0\.1:80 ' \
		"the accepted socket's local address"
}

test_list_shows_rule()
{
	start_server srv -b 127.0.0.1 -p 8080
	"$PORTCTL" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
	defer "$PORTCTL" flush

	expect_status 0 "$PORTCTL" list
	check_match "$out" "^tcp 80 .*pid $srv_pid .*fd $srv_fd" "portctl list"
}

test_del_refuses_next()
{
	start_server srv -b 127.0.0.1 -p 8080
	"$PORTCTL" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
	defer "$PORTCTL" flush
	expect_status 0 "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80

	"$PORTCTL" del tcp 80
	expect_status 3 "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
	check_eq "$out" refused "connection after del"
	expect_status 0 "$PORTCTL" list
	check_no_match "$out" '^tcp 80 ' "portctl list after del"
}

test_unload_with_rule_and_connection()
{
	local conn_out

	require_root
	start_server srv -b 127.0.0.1 -p 8080 -n 1
	"$PORTCTL" add tcp 80 to pid "$srv_pid" fd "$srv_fd"
	defer module_load
	# A client that keeps its steered connection open across the unload.
	conn_out=$(mktemp)
	defer rm -f "$conn_out"
	python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", 80))
print("open", s.getpeername()[1], flush=True)
time.sleep(30)' > "$conn_out" &
	defer kill $!
	busywait "$START_MS" grep -q '^open 80' "$conn_out" || fail "no steered connection"

	rmmod portdispatch || fail "rmmod refused with a rule and a connection open"
	module_loaded && fail "the module is still loaded"
	module_load
}

ktap_plan 4
run_test "a connection to an unbound port reaches the chosen socket, unNATed" test_steer
run_test "portctl list shows the rule" test_list_shows_rule
run_test "after portctl del the next connection is refused" test_del_refuses_next
run_test "rmmod with a rule installed and a connection open" test_unload_with_rule_and_connection
ktap_finish
