#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# shellcheck disable=SC2154 # spawn_server sets VAR_pid, VAR_fd and VAR_out
# A batch file applies whole or not at all, and no packet ever sees it
# half applied; save writes the whole table or nothing. In one namespace,
# over loopback:
#
#   client loop --> :80..:89 --> rules from file A -> port 8080 (server A)
#                            \-> rules from file B -> port 9090 (server B)
#
# Files A and B each flush the table and add the ten rules back, among
# thousands of others, so applying one takes a while: a client that ever
# met the table between the flush and the adds would be refused. The
# client connects without a pause from before the first swap to after the
# last, and counts the connections that lay wholly within the swaps: too
# few, and the test proves nothing, so it fails.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

NS=

pc() { ip netns exec "$NS" "$PORTCTL" "$@"; }

# serve PORT [PDSOCK-ARGS...]: a server on 127.0.0.1:PORT; SRV_PID and
# SRV_FD name its socket, SRV_OUT is what it prints.
SRV_PID=
SRV_FD=
SRV_OUT=

serve()
{
	local port=$1

	shift
	SRV_OUT=$(mktemp)
	defer rm -f "$SRV_OUT"
	ip netns exec "$NS" "$PD_BIN/pdsock" serve "$@" -b 127.0.0.1 -p "$port" > "$SRV_OUT" &
	defer kill $!
	busywait "$START_MS" grep -q '^ready' "$SRV_OUT" || fail "server on $port did not start"
	SRV_PID=$(sed -n 's/^ready pid=\([0-9]*\).*/\1/p' "$SRV_OUT")
	SRV_FD=$(sed -n 's/^ready.* fd=\([0-9]*\).*/\1/p' "$SRV_OUT")
}

# make_file FILE TARGET_PORT: flush, the ten steered ports, and fillers
# enough that a commit takes a while: 4000, or 400 on a slow machine (the
# debug kernel, where 400 take about as long as 4000 elsewhere).
make_file()
{
	local p fillers=4000

	[ "${KSFT_MACHINE_SLOW:-}" = yes ] && fillers=400

	{
		echo "# steer 80-89 to port $2"
		echo flush
		for p in $(seq 10000 $((10000 + fillers - 1))); do
			echo "add udp $p to port $2"
		done
		for p in $(seq 80 89); do
			echo "add tcp $p to port $2"
		done
	} > "$1"
}

# client BEGIN END: connect to 80..89 round robin, one connection after
# the other, from the start until file END exists; print "ready" after
# the first connection, "port P: ERROR" for the first five that failed,
# and at the end "ok OK bad BAD window W": W connections lay wholly in
# the swap window, begun after BEGIN existed and over before END did.
client()
{
	ip netns exec "$NS" python3 -c '
import os, socket, sys
begin, end = sys.argv[1:3]
timeout = 2 * int(os.environ.get("PD_TIME_SCALE", "1"))
ok = bad = window = 0
port = 80
while True:
    started_in = os.path.exists(begin)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.close()
        ok += 1
    except OSError as e:
        bad += 1
        if bad <= 5:
            print(f"port {port}: {e}", flush=True)
    over = os.path.exists(end)
    if started_in and not over:
        window += 1
    if ok + bad == 1:
        print("ready", flush=True)
    if over:
        break
    port = 80 + (port - 79) % 10
print(f"ok {ok} bad {bad} window {window}", flush=True)' "$1" "$2"
}

# Swaps in the window (alternately file B and file A), and the
# connections that must lie wholly within it: a couple a swap, so that
# the client was seen connecting while the table changed under it.
SWAPS=10
MIN_WINDOW=$((2 * SWAPS))

test_no_half_applied_table()
{
	local a b begin end result i re nb

	setup_ns NS
	ns_server srv_a "$NS" -b 127.0.0.1 -p 8080
	ns_server srv_b "$NS" -b 127.0.0.1 -p 9090
	new_file; a=$REPLY
	new_file; b=$REPLY
	new_file; begin=$REPLY
	new_file; end=$REPLY
	new_file; result=$REPLY
	make_file "$a" 8080
	make_file "$b" 9090
	pc -b "$a"

	client "$begin" "$end" > "$result" &
	defer kill $!
	wait_line "$result" '^ready$' "$START_MS" ||
		fail "the client did not start: $(cat "$result")"
	touch "$begin"
	for ((i = 0; i < SWAPS / 2; i++)); do
		pc -b "$b"
		pc -b "$a"
	done
	touch "$end"
	wait_line "$result" '^ok ' 10000 || fail "the client did not finish: $(cat "$result")"
	cat "$result"
	count_lines "$srv_b_out" '^accept '
	nb=$REPLY
	echo "file B's target accepted $nb connections"

	re='^ok [0-9]+ bad ([0-9]+) window ([0-9]+)$'
	has_line "$result" "$re" || fail "the client's last word: $(tail -n 1 "$result")"
	check_eq "${BASH_REMATCH[1]}" 0 "connections that met a half-applied table"
	[ "${BASH_REMATCH[2]}" -ge "$MIN_WINDOW" ] ||
		fail "only ${BASH_REMATCH[2]} connections lay within the $SWAPS swaps, expected $MIN_WINDOW or more"
	# File B's table, which only the swaps put in, served the client.
	[ "$nb" -gt 0 ] || fail "no connection reached file B's target"
}

test_failing_file_changes_nothing()
{
	local f before

	setup_ns NS
	ns_server srv "$NS" -b 127.0.0.1 -p 8080
	pc add tcp 80 to port 8080
	pc add udp 53 to port 5353
	before=$(pc list)
	f=$(mktemp)
	defer rm -f "$f"
	{
		echo flush
		echo "add tcp 81 to port 8081"
		echo "add tcp 82-90 to port 8082"
		echo "add tcp 85 to port 8085"
	} > "$f"

	expect_status 1 pc -b "$f"
	check_match "$out" "^$f:4: " "the error names the failing file and line"
	check_eq "$(pc list)" "$before" "the table after a failing file"
	expect_status 0 ip netns exec "$NS" "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
}

# portctl save, each of its reads of a datagram held for 50 ms.
slow_save()
{
	# LeakSanitizer cannot work under ptrace: off for an ASan build.
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		ip netns exec "$NS" strace -f -qq -o /dev/null -e trace=recvmsg \
		-e inject=recvmsg:delay_exit=50000 "$PORTCTL" save
}

# A part of the table, loaded at boot, would silently lack the rest of
# the rules: a dump that a change interrupted (NLM_F_DUMP_INTR) is read
# again, and if every one was, save writes nothing. Here strace holds
# each of save's reads for 50 ms while pdnl changes the table without a
# pause, so that a change comes between the datagrams of every dump.
test_save_whole_or_nothing()
{
	local f saved err changes p rc=0

	require_cmd strace
	setup_ns NS
	f=$(mktemp) saved=$(mktemp) err=$(mktemp) changes=$(mktemp)
	defer rm -f "$f" "$saved" "$err" "$changes"
	# A dump of 1,000 rules takes a few datagrams.
	for p in $(seq 1000 1999); do
		echo "add udp $p to port 9"
	done > "$f"
	pc -b "$f"

	slow_save > "$saved"
	check_eq "$(grep -c '^replace udp' "$saved")" 1000 "rules saved from a still table"

	yes $'add tcp 2 2\ndel tcp 2' | ip netns exec "$NS" "$PD_BIN/pdnl" > "$changes" &
	defer kill $!
	busywait "$START_MS" grep -q '^ok' "$changes" || fail "pdnl changes nothing"
	slow_save > "$saved" 2> "$err" || rc=$?
	check_eq "$rc" 1 "the exit status of save"
	check_eq "$(cat "$err")" "Error: the table changed each of the 4 times it was read, so nothing was saved; try again." "what save said"
	check_eq "$(wc -c < "$saved")" 0 "bytes that save wrote"
}

# Sockets named by pid (and fd) in a file: portctl takes each one once,
# however many lines name it, and a line the kernel refuses for its socket
# is named, with nothing applied.
test_socket_targets()
{
	local tpid tfd tout upid ufd f before

	setup_ns NS
	serve 8080
	tpid=$SRV_PID tfd=$SRV_FD tout=$SRV_OUT
	serve 5353 -u
	upid=$SRV_PID ufd=$SRV_FD
	pc add tcp 81 to port 9999
	f=$(mktemp)
	defer rm -f "$f"
	{
		echo "add tcp 80 to pid $tpid fd $tfd"
		echo "replace tcp 81 to pid $tpid fd $tfd"
		echo "add udp 53 to pid $upid"
	} > "$f"
	pc -b "$f"
	check_eq "$(pc list)" "tcp 80 ipv4 -> pid $tpid (pdsock) fd $tfd 127.0.0.1:8080 listening
tcp 81 ipv4 -> pid $tpid (pdsock) fd $tfd 127.0.0.1:8080 listening
udp 53 ipv4 -> pid $upid (pdsock) fd $ufd 127.0.0.1:5353 bound" "the table the file made"
	expect_status 0 ip netns exec "$NS" "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 81
	busywait 5000 grep -q '^accept local=127\.0\.0\.1:81 ' "$tout" ||
		fail "the connection to port 81 did not reach the socket the file named"

	# The kernel refuses line 3: a TCP socket for a UDP rule.
	before=$(pc list)
	{
		echo "del tcp 80"
		echo "add udp 54 to pid $upid fd $ufd"
		echo "add udp 55 to pid $tpid fd $tfd"
	} > "$f"
	expect_status 1 pc -b "$f"
	check_match "$out" "^$f:3: fd $tfd of process $tpid is TCP, the rule is UDP\\.$" "the refusal"
	check_eq "$(pc list)" "$before" "the table after the refused file"

	# portctl cannot take line 2's socket: nothing is sent.
	printf 'del tcp 80\nadd tcp 90 to pid 4194304 fd 3\n' > "$f"
	expect_status 1 pc -b "$f"
	check_match "$out" "^$f:2: no process with pid 4194304" "the refusal"
	check_eq "$(pc list)" "$before" "the table after a file naming no process"
}

ktap_plan 4
run_test "no connection meets a half-applied batch file" test_no_half_applied_table
run_test "a file with a failing line changes nothing" test_failing_file_changes_nothing
run_test "save writes the whole table or nothing" test_save_whole_or_nothing
run_test "a file's socket targets apply, or name their line" test_socket_targets
ktap_finish
