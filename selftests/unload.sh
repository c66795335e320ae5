#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# shellcheck disable=SC2154 # spawn_server sets VAR_pid, VAR_fd and VAR_out
# Unloading portdispatch while it is busy. Listed last in TESTS: every
# test here unloads the module (and loads it again when it ends).
#
#  Test 1: three tenants, each alone in its namespace, all on loopback
#
#   +---- n1 (n2, n3 alike) ------------------------------------------+
#   |  tenant (one python3 process)                                   |
#   |    listens 127.0.0.1:8080 <-- rule tcp 80 -> pid P fd F        |
#   |    listens 127.0.0.1:8081 <-- rule tcp 81 -> port 8081         |
#   |    holds   127.0.0.1:X -> 127.0.0.1:80 and :81, steered, and    |
#   |            talks over them five times a second                  |
#   |    knocks  127.0.0.2:Y -> 127.0.0.1:80 and :81, new connections |
#   |            all the time, reporting when the outcome changes     |
#   +-----------------------------------------------------------------+
#                           rmmod portdispatch
#
#   The held connections are ordinary sockets: they outlive the module.
#   New ones are refused once the rules are gone, and are steered again
#   when the module is back and a rule is added.
#
#  Test 2: a netlink client holds a batch open (BATCH_BEGIN, one
#  RULE_ADD), then rmmod.
#  Tests 3-4: rmmod while `portctl monitor` is subscribed / while a dump
#  is half read. Refusing is allowed there (module in use), crashing is
#  not, and once they are over the module must go.
#  Test 5: rmmod while steered UDP flows are remembered and a server's
#  answers are being rewritten to leave from the port asked.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

# The tenant of test 1: python3 -c "$PY_TENANT" GOFILE. Prints "ready
# pid=PID fd=FD port=PORT" for 8080 and 8081, then waits for GOFILE to
# exist before it connects ("open local=... peer=...") and starts
# talking ("ok N" per round, "error ..." and exit if the talk breaks) and
# knocking ("new PORT connected|refused|error ..." each time the outcome
# for PORT changes). Its server echoes, and prints "accept local=...
# peer=..." for every connection but the knocks.
PY_TENANT='
import os, selectors, socket, sys, threading, time
go = sys.argv[1]
scale = int(os.environ.get("PD_TIME_SCALE", "1"))
lock = threading.Lock()
def say(s):
    with lock:
        print(s, flush=True)
def addr(a):
    return "%s:%d" % a[:2]
sel = selectors.DefaultSelector()
for port in (8080, 8081):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)
    sel.register(ls, selectors.EVENT_READ, None)
    say("ready pid=%d fd=%d port=%d" % (os.getpid(), ls.fileno(), port))

def knock():
    last = {}
    while True:
        for port in (80, 81):
            s = socket.socket()
            s.settimeout(5 * scale)
            s.bind(("127.0.0.2", 0))
            try:
                s.connect(("127.0.0.1", port))
                what = "connected"
            except ConnectionRefusedError:
                what = "refused"
            except OSError as e:
                what = "error %s" % e
            s.close()
            if last.get(port) != what:
                last[port] = what
                say("new %d %s" % (port, what))
        time.sleep(0.01)

def talk():
    while not os.path.exists(go):
        time.sleep(0.05)
    conns = []
    for port in (80, 81):
        c = socket.create_connection(("127.0.0.1", port), timeout=10 * scale)
        conns.append(c)
        say("open local=%s peer=%s" % (addr(c.getsockname()), addr(c.getpeername())))
    threading.Thread(target=knock, daemon=True).start()
    n = 0
    while True:
        n += 1
        for c in conns:
            msg = b"ping %d\n" % n
            try:
                c.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = c.recv(64)
                    if not chunk:
                        raise OSError("connection closed")
                    got += chunk
                if got != msg:
                    raise OSError("sent %r, got %r" % (msg, got))
            except OSError as e:
                say("error %s: %s" % (addr(c.getpeername()), e))
                os._exit(1)
        say("ok %d" % n)
        time.sleep(0.2)

threading.Thread(target=talk, daemon=True).start()
while True:
    for key, _ in sel.select():
        if key.data is None:
            c, peer = key.fileobj.accept()
            if peer[0] != "127.0.0.2":
                say("accept local=%s peer=%s" % (addr(c.getsockname()), addr(peer)))
            sel.register(c, selectors.EVENT_READ, "conn")
            continue
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if data:
            key.fileobj.sendall(data)
        else:
            sel.unregister(key.fileobj)
            key.fileobj.close()
'

# A raw generic netlink client, for what portctl does not leave half
# done: python3 -c "$PY_NL" batch | dump GOFILE.
#  batch: BATCH_BEGIN, then RULE_ADD tcp 80 -> port 8080, both acked;
#	prints "ready pid=PID fd=FD batch open" and sleeps, batch open.
#  dump:  starts a RULE_GET dump and reads its first part only, prints
#	"dumping N" (N rules so far); once GOFILE exists it reads the rest
#	and prints "done N" (N rules in all).
# Failures print "error WHAT: WHY" and exit 1.
PY_NL='
import os, socket, struct, sys, time
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 16, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
NLA_F_NESTED = 0x8000
NETLINK_GENERIC = 16
# uapi/linux/portdispatch.h
CMD_RULE_ADD, CMD_RULE_GET, CMD_BATCH_BEGIN = 1, 4, 7
A_RULE_PROTO, A_RULE_PORT_MIN, A_RULE_TARGET = 3, 4, 9
A_TARGET_PORT = 5

def die(what):
    print("error " + what, flush=True)
    sys.exit(1)

def attr(t, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, t) + data + b"\0" * (-n % 4)

def attrs(b):
    while len(b) >= 4:
        n, t = struct.unpack_from("=HH", b)
        yield t & 0x3fff, b[4:n]
        b = b[(n + 3) & ~3:]

def messages(data):
    while len(data) >= 16:
        n, t = struct.unpack_from("=IH", data)
        yield t, data[16:n]
        data = data[(n + 3) & ~3:]

def nl_socket():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    s.bind((0, 0))
    return s

def send(s, family, cmd, payload=b"", flags=NLM_F_ACK):
    body = struct.pack("=BBH", cmd, 1, 0) + payload
    s.send(struct.pack("=IHHII", 16 + len(body), family,
                       NLM_F_REQUEST | flags, 0, 0) + body)

def ack(s, what):
    for t, body in messages(s.recv(65536)):
        if t == NLMSG_ERROR:
            err = struct.unpack_from("=i", body)[0]
            if err:
                die("%s: %s" % (what, os.strerror(-err)))
            return
    die("%s: no ack" % what)

def family_id():
    s = nl_socket()
    send(s, GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
         attr(CTRL_ATTR_FAMILY_NAME, b"portdispatch\0"), 0)
    for t, body in messages(s.recv(65536)):
        if t == NLMSG_ERROR:
            die("resolving the family: %s" % os.strerror(-struct.unpack_from("=i", body)[0]))
        for a, v in attrs(body[4:]):
            if a == CTRL_ATTR_FAMILY_ID:
                s.close()
                return struct.unpack("=H", v[:2])[0]
    die("resolving the family: no id")

fam = family_id()
if sys.argv[1] == "batch":
    s = nl_socket()
    send(s, fam, CMD_BATCH_BEGIN)
    ack(s, "BATCH_BEGIN")
    rule = (attr(A_RULE_PROTO, struct.pack("=B", socket.IPPROTO_TCP)) +
            attr(A_RULE_PORT_MIN, struct.pack("=I", 80)) +
            attr(A_RULE_TARGET | NLA_F_NESTED,
                 attr(A_TARGET_PORT, struct.pack("=I", 8080))))
    send(s, fam, CMD_RULE_ADD, rule)
    ack(s, "RULE_ADD")
    print("ready pid=%d fd=%d batch open" % (os.getpid(), s.fileno()), flush=True)
    while True:
        time.sleep(60)

# dump: a fresh socket, so the kernel sizes the parts for small reads
s = nl_socket()
send(s, fam, CMD_RULE_GET, b"", NLM_F_DUMP)
rules, done = 0, False
def take(data):
    global rules, done
    for t, body in messages(data):
        if t == NLMSG_DONE:
            done = True
        elif t == NLMSG_ERROR:
            die("dump: %s" % os.strerror(-struct.unpack_from("=i", body)[0]))
        elif t == fam:
            rules += 1
take(s.recv(16384))
if done:
    die("dump: it ended in its first part (%d rules)" % rules)
print("dumping %d" % rules, flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
while not done:
    take(s.recv(16384))
print("done %d" % rules, flush=True)
'

# The UDP tenant of test 5: python3 -c "$PY_UDP" GOFILE. Serves on
# 127.0.0.1:5353 (prints "ready pid=PID fd=FD"); once GOFILE exists, asks
# 127.0.0.1:53 again and again, each time from a new connected socket (a
# new flow), answers itself when the question reaches the server, and
# prints "state ok|refused|timeout" each time the outcome changes.
PY_UDP='
import os, select, socket, sys, time
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 5353))
print("ready pid=%d fd=%d" % (os.getpid(), srv.fileno()), flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
last = None
while True:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(0.5)
    c.connect(("127.0.0.1", 53))
    c.send(b"q")
    if select.select([srv], [], [], 0.5)[0]:
        q, peer = srv.recvfrom(16)
        srv.sendto(b"a", peer)
    try:
        c.recv(16)
        now = "ok"
    except ConnectionRefusedError:
        now = "refused"
    except socket.timeout:
        now = "timeout"
    c.close()
    if now != last:
        print("state " + now, flush=True)
        last = now
'

# try_rmmod: rmmod portdispatch; its status in $rc, its words in $out.
try_rmmod()
{
	rc=0
	out=$(rmmod portdispatch 2>&1) || rc=$?
}

test_unload_under_load()
{
	local n1 n2 n3 go i
	local -a nss tpid tfd tout

	setup_ns n1 n2 n3
	nss=("$n1" "$n2" "$n3")
	defer module_load
	dmesg_mark
	new_file
	go=$REPLY

	for i in 0 1 2; do
		spawn_server t ip netns exec "${nss[i]}" python3 -c "$PY_TENANT" "$go"
		tpid[i]=$t_pid tfd[i]=$t_fd tout[i]=$t_out
		ip netns exec "${nss[i]}" "$PORTCTL" add tcp 80 to pid "$t_pid" fd "$t_fd"
		ip netns exec "${nss[i]}" "$PORTCTL" add tcp 81 to port 8081
	done
	touch "$go"
	for i in 0 1 2; do
		wait_line "${tout[i]}" '^ok 1$' 30000 ||
			fail "tenant $i did not get going: $(cat "${tout[i]}")"
		has_line "${tout[i]}" '^accept local=127\.0\.0\.1:80 peer=127\.0\.0\.1:' ||
			fail "tenant $i: its connection to port 80 was not steered: $(cat "${tout[i]}")"
		has_line "${tout[i]}" '^accept local=127\.0\.0\.1:81 peer=127\.0\.0\.1:' ||
			fail "tenant $i: its connection to port 81 was not steered: $(cat "${tout[i]}")"
		both_ports "${tout[i]}" connected ||
			fail "tenant $i: new connections are not steered: $(cat "${tout[i]}")"
		if has_line "${tout[i]}" '^new [0-9]+ (refused|error)'; then
			fail "tenant $i: new connections failed with the rules in place: $(grep '^new' "${tout[i]}")"
		fi
	done

	# Rules with socket and port targets in three namespaces, connections
	# open through them and new ones arriving all the time.
	try_rmmod
	[ "$rc" -eq 0 ] || fail "rmmod refused (exit $rc): $out"
	if module_loaded; then
		fail "the module is still loaded after rmmod"
	fi

	for i in 0 1 2; do
		# The open connections keep talking...
		chatter_alive "${tout[i]}" 3
		# ... new ones meet no rule ...
		both_ports "${tout[i]}" refused ||
			fail "tenant $i: new connections are not refused after rmmod: $(grep -v '^ok' "${tout[i]}")"
		expect_status 3 ip netns exec "${nss[i]}" "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
		expect_status 3 ip netns exec "${nss[i]}" "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 81
		# ... and none of them failed any other way, before or during.
		if has_line "${tout[i]}" '^new [0-9]+ error'; then
			fail "tenant $i: a new connection failed: $(grep '^new' "${tout[i]}")"
		fi
	done

	module_load
	for i in 0 1 2; do
		expect_status 0 ip netns exec "${nss[i]}" "$PORTCTL" list
		check_eq "$out" "" "tenant $i's table after the module came back"
		expect_status 0 ip netns exec "${nss[i]}" "$PORTCTL" add tcp 80 to pid "${tpid[i]}" fd "${tfd[i]}"
		expect_status 0 ip netns exec "${nss[i]}" "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
		busywait 20000 _seen_twice "${tout[i]}" '^new 80 connected$' ||
			fail "tenant $i: new connections are not steered again: $(grep '^new' "${tout[i]}")"
		chatter_alive "${tout[i]}" 1
	done
	dmesg_check_clean
}

# both_ports FILE OUTCOME: the tenant saw OUTCOME for ports 80 and 81.
both_ports()
{
	wait_line "$1" "^new 80 $2\$" 20000 && wait_line "$1" "^new 81 $2\$" 20000
}

_seen_twice()
{
	count_lines "$1" "$2"
	[ "$REPLY" -ge 2 ]
}

test_unload_with_open_batch()
{
	local ns

	setup_ns ns
	defer module_load
	dmesg_mark

	spawn_server nl ip netns exec "$ns" python3 -c "$PY_NL" batch
	# The batch is open: other sockets cannot change the table, and the
	# batch's rule is not in it.
	expect_status 1 ip netns exec "$ns" "$PORTCTL" add tcp 81 to port 8081
	check_match "$out" "batch .*in progress" "portctl add while another socket's batch is open"
	expect_status 0 ip netns exec "$ns" "$PORTCTL" list
	check_eq "$out" "" "the table while the batch is open"

	try_rmmod
	[ "$rc" -eq 0 ] || fail "rmmod refused with a batch open (exit $rc): $out"
	if module_loaded; then
		fail "the module is still loaded after rmmod"
	fi
	# The batch's socket closes after the module went.
	kill "$nl_pid"
	wait "$nl_pid" || true

	module_load
	expect_status 0 ip netns exec "$ns" "$PORTCTL" list
	check_eq "$out" "" "the table after the module came back"
	expect_status 0 ip netns exec "$ns" "$PORTCTL" add tcp 81 to port 8081
	dmesg_check_clean
}

test_unload_with_monitor()
{
	local ns mon mon_pid port=1000

	setup_ns ns
	defer module_load
	dmesg_mark

	new_file
	mon=$REPLY
	ip netns exec "$ns" "$PORTCTL" monitor > "$mon" 2>&1 &
	mon_pid=$!
	defer kill "$mon_pid"
	# Subscribed once it reports a change (it cannot say so before).
	busywait 20000 _monitor_saw_change "$ns" "$mon" ||
		fail "portctl monitor reported no change: $(cat "$mon")"

	try_rmmod
	echo "rmmod with a monitor subscribed: exit $rc${out:+: $out}"
	if [ "$rc" -ne 0 ]; then
		check_match "$out" "in use" "why rmmod refused"
		module_loaded || fail "rmmod failed, yet the module is gone"
	fi
	kill "$mon_pid"
	wait "$mon_pid" || true
	if module_loaded; then
		try_rmmod
		[ "$rc" -eq 0 ] || fail "rmmod refused once the monitor ended (exit $rc): $out"
	fi
	module_load
	dmesg_check_clean
}

# Adds one rule more and looks for the monitor's line about any of them.
_monitor_saw_change()
{
	port=$((port + 1))
	ip netns exec "$1" "$PORTCTL" add tcp "$port" to port 8080 || return 1
	has_line "$2" '^added tcp 1[0-9]{3} '
}

test_unload_during_dump()
{
	local ns go dump p refused=0

	setup_ns ns
	defer module_load
	dmesg_mark

	# Enough rules for a dump of many parts.
	new_file
	for ((p = 10000; p < 11000; p++)); do
		echo "add tcp $p to port 8080"
	done > "$REPLY"
	ip netns exec "$ns" "$PORTCTL" -b "$REPLY"

	new_file
	go=$REPLY
	new_file
	dump=$REPLY
	ip netns exec "$ns" python3 -c "$PY_NL" dump "$go" > "$dump" 2>&1 &
	defer kill $!
	wait_line "$dump" '^(dumping|error)' 30000 ||
		fail "the dump did not start: $(cat "$dump")"
	has_line "$dump" '^dumping [0-9]+$' || fail "$(cat "$dump")"

	try_rmmod
	echo "rmmod with a dump half read: exit $rc${out:+: $out}"
	if [ "$rc" -ne 0 ]; then
		check_match "$out" "in use" "why rmmod refused"
		module_loaded || fail "rmmod failed, yet the module is gone"
		refused=1
	fi

	# Read the rest: whole, if the module stayed.
	touch "$go"
	wait_line "$dump" '^(done|error)' 30000 ||
		fail "the dump did not end: $(cat "$dump")"
	if [ "$refused" -eq 1 ]; then
		has_line "$dump" '^done 1000$' ||
			fail "the dump did not list the 1000 rules: $(cat "$dump")"
		try_rmmod
		[ "$rc" -eq 0 ] || fail "rmmod refused once the dump ended (exit $rc): $out"
	fi
	module_load
	dmesg_check_clean
}

require_root
# Steered UDP flows are remembered, and the server's answers rewritten to
# leave from port 53, while rmmod runs: the flows go with the module.
test_unload_with_udp_flows()
{
	local ns go

	setup_ns ns
	defer module_load
	dmesg_mark
	new_file
	go=$REPLY
	spawn_server u ip netns exec "$ns" python3 -c "$PY_UDP" "$go"
	ip netns exec "$ns" "$PORTCTL" add udp 53 to port 5353
	touch "$go"
	wait_line "$u_out" '^state ok$' "$START_MS" ||
		fail "no answer came back through the rule: $(cat "$u_out")"
	expect_status 0 ip netns exec "$ns" "$PORTCTL" stats
	check_match "$out" "udp_flows [1-9]" "the flows remembered before rmmod"

	try_rmmod
	[ "$rc" -eq 0 ] || fail "rmmod refused with UDP flows remembered (exit $rc): $out"
	if module_loaded; then
		fail "the module is still loaded after rmmod"
	fi
	# Nothing listens on 53: the questions are refused now.
	wait_line "$u_out" '^state refused$' "$START_MS" ||
		fail "questions to 53 are not refused after rmmod: $(cat "$u_out")"

	module_load
	ip netns exec "$ns" "$PORTCTL" add udp 53 to port 5353
	busywait "$START_MS" has_count "$u_out" '^state ok$' 2 ||
		fail "no answer came back through the rule after the module came back: $(cat "$u_out")"
	dmesg_check_clean
}

ktap_plan 5
run_test "rmmod with rules and steered connections in three namespaces, under new connections" test_unload_under_load
run_test "rmmod while a batch is open" test_unload_with_open_batch
run_test "rmmod while portctl monitor is subscribed" test_unload_with_monitor
run_test "rmmod while a dump is half read" test_unload_during_dump
run_test "rmmod while UDP flows are remembered and answers rewritten" test_unload_with_udp_flows
ktap_finish
