#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# kernel.sh PORTCTL: portctl against the loaded portdispatch module.
#
# Run as root where the module is loaded, e.g. in a guest:
#   scripts/vm-run --kernel 6.1 -- userspace/tests/kernel.sh build/portctl
# It works in a network namespace of its own (the table is per namespace),
# so it never touches the caller's rules. Checks the text and JSON output
# (JSON against portctl.schema.json), the kernel's errors as sentences,
# socket targets found by pid, batches (atomic, errors mapped to lines,
# sent in few system calls), save and restore, monitor, and metrics
# (Prometheus' text format, checked by promtool when it is installed, with
# the numbers of the JSON output).
#
# Output is KTAP; exit 4 when it cannot run here (skip).
#
#   +-------------------- netns (unshare -n) --------------------+
#   | lo up; python3 listeners on 127.0.0.1 / [::]              |
#   | portctl rules ---> sockets of those processes              |
#   +------------------------------------------------------------+

set -u

PORTCTL=${1:?usage: kernel.sh PORTCTL}
[ -x "$PORTCTL" ] || { echo "kernel.sh: $PORTCTL is not a program" >&2; exit 1; }
PORTCTL=$(readlink -f "$PORTCTL")
HERE=$(cd "$(dirname "$0")" && pwd)
SCHEMA=$HERE/../portctl.schema.json

skip_all() {
	echo "TAP version 13"
	echo "1..0 # SKIP $1"
	exit 4
}

[ "$(id -u)" = 0 ] || skip_all "needs root"
[ -d /sys/module/portdispatch ] || skip_all "the portdispatch module is not loaded"
command -v python3 >/dev/null || skip_all "needs python3"
if [ -z "${PORTCTL_KERNEL_NETNS:-}" ]; then
	PORTCTL_KERNEL_NETNS=1 exec unshare --net "$0" "$@"
fi
ip link set lo up || skip_all "cannot bring lo up"

# shellcheck source=lib.sh
. "$HERE/lib.sh"

# Every wait below is a poll with a bound; the bounds are for Debian's
# kernels, times PD_TIME_SCALE (selftests/run sets it: 3 on the debug
# kernel).
SCALE=${PD_TIME_SCALE:-1}

# Found, not imported: the import alone takes seconds in a guest, and
# check_json imports it once at the end.
HAVE_SCHEMA=
python3 -c 'import importlib.util as u, sys
sys.exit(not u.find_spec("jsonschema"))' && HAVE_SCHEMA=1

# valid_json NAME FILE [lines]: FILE is JSON (or JSON lines) that fits the
# schema. Checked all at once at the end: python3 starts slowly in guests.
JSON_CHECKS=()
valid_json() {
	JSON_CHECKS+=("$1" "$2" "${3:-}")
}

check_json() {
	local name result

	[ ${#JSON_CHECKS[@]} = 0 ] && return
	python3 - "$SCHEMA" "$HAVE_SCHEMA" "${JSON_CHECKS[@]}" >"$WORK/json" <<'PY'
import json, sys
schema_path, have_schema, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
validator = None
if have_schema:
    import jsonschema
    validator = jsonschema.Draft202012Validator(json.load(open(schema_path)))
for i in range(0, len(rest), 3):
    name, path, lines = rest[i:i + 3]
    try:
        text = open(path).read()
        docs = ([json.loads(l) for l in text.splitlines() if l] if lines
                else [json.loads(text)])
        for d in docs:
            if validator:
                validator.validate(d)
        print("ok")
    except Exception as e:
        print("not ok " + str(e).splitlines()[0][:200])
PY
	for ((i = 0; i < ${#JSON_CHECKS[@]}; i += 3)); do
		name=${JSON_CHECKS[i]}
		IFS= read -r result
		if [ "$result" = ok ]; then
			ok "$name"
		else
			not_ok "$name" "${result#not ok }"
		fi
	done <"$WORK/json"
}

# listen SPEC...: a python3 process with one socket per SPEC
# (tcp4:PORT, tcp6:PORT, udp4:PORT, udp6:PORT); sets LPID and, in LFD,
# the fd of each socket in order. It lives until killed. With LISTEN_NAME
# set, it names itself so (any bytes: PR_SET_NAME) before it says its fds.
listen() {
	python3 - "$@" >"$WORK/listen" <<'PY' &
import os, socket, sys, time
name = os.environb.get(b"LISTEN_NAME")
if name:
    import ctypes
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)
keep = []
for spec in sys.argv[1:]:
    kind, port = spec.split(":")
    fam = socket.AF_INET6 if kind.endswith("6") else socket.AF_INET
    typ = socket.SOCK_STREAM if kind.startswith("tcp") else socket.SOCK_DGRAM
    s = socket.socket(fam, typ)
    s.bind(("::" if fam == socket.AF_INET6 else "127.0.0.1", int(port)))
    if typ == socket.SOCK_STREAM:
        s.listen()
    keep.append(s)
print(" ".join(str(s.fileno()) for s in keep), flush=True)
sys.stdout.close()
time.sleep(3600)
PY
	LPID=$!
	CHILDREN+=("$LPID")
	local i
	for i in $(seq $((200 * SCALE))); do
		[ -s "$WORK/listen" ] && break
		sleep 0.1
	done
	read -r -a LFD <"$WORK/listen"
}

# lap LINE: how long the section before took, as a KTAP diagnostic.
LAP=$SECONDS
lap() {
	RESULTS+=("# $((SECONDS - LAP)) s up to line $1")
	LAP=$SECONDS
}

# A kernel error is one sentence: "Error: ...", one period at the end.
sentence() {
	[[ $ERR =~ ^Error:\ [^[:space:]].*[^.][.]$ ]] && [[ $ERR != *$'\n'* ]]
}

lap "$LINENO"
# ---------------------------------------------------------------- basics

expect_out "empty table" "" list
expect_out "empty table as JSON" "[]" -j list
expect_out "no command lists" "" 

expect_out "add a port target" "" add tcp 80 to port 8080
expect_out "add a range with a prefix" "" add udp 5000-5010 dst 192.0.2.0/24 to port 5353
expect_out "add an IPv6-only rule" "" -6 add tcp 443 dst 2001:db8::/64 to port 8443
expect_out "list" "tcp 80 any -> port 8080
tcp 443 ipv6 dst 2001:db8::/64 -> port 8443
udp 5000-5010 ipv4 dst 192.0.2.0/24 -> port 5353" list
expect_out "list -s" "tcp 80 any -> port 8080 steered 0 undeliverable 0
tcp 443 ipv6 dst 2001:db8::/64 -> port 8443 steered 0 undeliverable 0
udp 5000-5010 ipv4 dst 192.0.2.0/24 -> port 5353 steered 0 undeliverable 0 replies 0" -s list

run -j list
echo "$OUT" >"$WORK/list.json"
valid_json "list -j fits the schema" "$WORK/list.json"
check "list -j: dst is null without a prefix" \
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r[0]["dst"] is None and r[0]["target"] == {"type":"port","port":8080}, r[0]' "$WORK/list.json"
# Read with grep: a python3 more costs a second on the debug kernel.
replies=$(grep -o '"proto":"[^"]*"\|"replies":[^,}]*' "$WORK/list.json" | tr '\n' ' ')
if [ "$replies" = '"proto":"tcp" "replies":null "proto":"tcp" "replies":null "proto":"udp" "replies":0 ' ]; then
	ok "list -j: replies are a UDP rule's, null for TCP"
else
	not_ok "list -j: replies are a UDP rule's, null for TCP" "got: $replies"
fi

run -j add tcp 81 to port 8081
echo "$OUT" >"$WORK/echo.json"
check "add -j echoes the rule" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["proto"] == "tcp" and r["port_min"] == r["port_max"] == 81, r
assert r["target"] == {"type": "port", "port": 8081}, r' "$WORK/echo.json"
valid_json "add -j fits the schema" "$WORK/echo.json"
run -j replace tcp 81 to port 9081
if [[ $OUT == *'"port":9081'* ]]; then
	ok "replace -j echoes the new target"
else
	not_ok "replace -j echoes the new target" "$OUT"
fi

run stats
NL=$'\n'
re="^lookups [0-9]+${NL}hits [0-9]+${NL}misses [0-9]+${NL}rules 4${NL}max_rules [0-9]+"
re+="${NL}udp_flows 0${NL}max_udp_flows [0-9]+${NL}udp_flows_missed 0$"
if [ "$RC" = 0 ] && [[ $OUT =~ $re ]]; then
	ok "stats"
else
	not_ok "stats" "$OUT"
fi
run -j stats
echo "$OUT" >"$WORK/stats.json"
valid_json "stats -j fits the schema" "$WORK/stats.json"
re=',"udp_flows":0,"max_udp_flows":[0-9]+,"udp_flows_missed":0}$'
if [[ $OUT =~ $re ]]; then
	ok "stats -j: the UDP flows, their limit and the missed ones"
else
	not_ok "stats -j: the UDP flows, their limit and the missed ones" "$OUT"
fi

# listed PROTO PORT: the lines of list for that rule's key.
listed() {
	"$PORTCTL" list | grep "^$1 $2 "
}
expect_out "replace of no rule adds it" "" replace udp 82 to port 8082
check "... as add would" [ "$(listed udp 82)" = "udp 82 any -> port 8082" ]
expect_out "-4 replace over a rule for both families" "" -4 replace udp 82 to port 9082
check "... replaces all of it: no IPv6 rule stays" [ "$(listed udp 82)" = "udp 82 ipv4 -> port 9082" ]
expect_out "-6 add beside it" "" -6 add udp 82 to port 9083
expect_out "replace over an IPv4 and an IPv6 rule" "" replace udp 82 to port 9084
check "... leaves one rule for both" [ "$(listed udp 82)" = "udp 82 any -> port 9084" ]
run del udp 82

lap "$LINENO"
# ---------------------------------------------------------------- errors

expect_match "a conflict is refused" 1 '^Error: .*\.$' add tcp 80 to port 9
check "... as one sentence" sentence
for words in "add tcp 70000 to port 1" "add tcp 0 to port 1" "add udp 90-80 to port 1" \
	     "add tcp 1 dst 192.0.2.0/33 to port 1" "add tcp 1 dst 192.0.2.1/24 to port 1" \
	     "add tcp 1 to port 70000" "del tcp 12345"; do
	# shellcheck disable=SC2086
	run $words
	if [ "$RC" = 1 ] && sentence; then
		ok "kernel refuses: $words"
	else
		not_ok "kernel refuses: $words" "got exit $RC: $ERR"
	fi
done
expect_match "the kernel's message is passed on" 1 '70000' add tcp 70000 to port 1

if command -v setpriv >/dev/null; then
	nobody() {
		setpriv --reuid=65534 --regid=65534 --clear-groups \
			--inh-caps=-all --bounding-set=-all "$@"
	}
	run_nobody() {
		nobody "$PORTCTL" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null
		RC=$?
		ERR=$(cat "$WORK/err")
	}
	run_nobody add tcp 1 to port 2
	if [ "$RC" = 1 ] && [ "$ERR" = "Error: changing the port table needs CAP_NET_ADMIN." ]; then
		ok "unprivileged add"
	else
		not_ok "unprivileged add" "got exit $RC: $ERR"
	fi
	run_nobody list
	if [ "$RC" = 1 ] && [ "$ERR" = "Error: reading the port table needs CAP_NET_ADMIN." ]; then
		ok "unprivileged list"
	else
		not_ok "unprivileged list" "got exit $RC: $ERR"
	fi
	run_nobody monitor
	if [ "$RC" = 1 ] && [ "$ERR" = "Error: watching the port table needs CAP_NET_ADMIN." ]; then
		ok "unprivileged monitor"
	else
		not_ok "unprivileged monitor" "got exit $RC: $ERR"
	fi
else
	for n in "unprivileged add" "unprivileged list" "unprivileged monitor"; do
		skip "$n" "needs setpriv"
	done
fi

lap "$LINENO"
# ---------------------------------------------------------------- sockets

run flush
listen tcp4:8080 tcp6:8081 udp4:5353
A=${LFD[0]} B=${LFD[1]} U=${LFD[2]}
expect "two listeners: name one" 1 "Error: process $LPID has 2 listening TCP sockets: fd $A (127.0.0.1:8080), fd $B ([::]:8081); name one with \"fd\"." \
	add tcp 80 to pid "$LPID"
expect_out "a named fd" "" -6 add tcp 81 to pid "$LPID" fd "$B"
expect_out "the one UDP socket" "" add udp 53 to pid "$LPID"
expect_match "a TCP socket for a UDP rule" 1 '^Error: .*\.$' add udp 54 to pid "$LPID" fd "$A"
expect_match "an fd that is not a socket" 1 '^Error: .*\.$' add udp 54 to pid "$LPID" fd 0
expect_out "list shows the sockets" "tcp 81 ipv6 -> pid $LPID (python3) fd $B [::]:8081 listening
udp 53 ipv4 -> pid $LPID (python3) fd $U 127.0.0.1:5353 bound" list
run -j list
echo "$OUT" >"$WORK/sockets.json"
valid_json "socket targets fit the schema" "$WORK/sockets.json"
check "socket target keys" python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))[0]["target"]
assert t["type"] == "socket" and t["pid"] == int(sys.argv[2]) and t["fd"] == int(sys.argv[3]), t
assert t["comm"] == "python3" and t["family"] == "inet6" and t["local_addr"] == "::", t
assert t["local_port"] == 8081 and t["state"] == "listening" and t["v6only"] is False, t
assert isinstance(t["inode"], int), t' "$WORK/sockets.json" "$LPID" "$B"

lap "$LINENO"
# ---------------------------------------------------------------- groups

run flush
S=$LPID	# the sockets' process, which monitor uses
listen tcp4:8443 tcp6:8444
G=$LPID GA=${LFD[0]} LPID=$S
expect_out "add a group" "" add tcp 443 to port 8443 weight 9, port 9443 weight 1
expect_out "add a group of a socket and ports, commas every way" "" \
	add tcp 444 to pid "$G" fd "$GA" weight 2 ,port 9443,port 10443 weight 3
expect_out "add a rule of one target, with a weight" "" add tcp 445 to port 8443 weight 5
expect_out "list: each target with its weight; none for a rule of one" "tcp 443 any -> port 8443 weight 9, port 9443 weight 1
tcp 444 ipv4 -> pid $G (python3) fd $GA 127.0.0.1:8443 listening weight 2, port 9443 weight 1, port 10443 weight 3
tcp 445 any -> port 8443" list
expect_match "the kernel refuses a target twice" 1 '^Error: .*\.$' add tcp 446 to port 8443, port 8443
check "... as one sentence" sentence
expect_out "16 targets" "" add tcp 446 to $(for i in $(seq 16); do printf 'port %d, ' $((9000 + i)); done | sed 's/, $//')
check "... all of them listed" [ "$("$PORTCTL" list | grep -o 'port 90[0-9]* weight 1' | wc -l)" = 16 ]
run del tcp 446

run -j replace tcp 443 to port 8443 weight 1, port 9443 weight 1
if [ "$RC" = 0 ] && [ "$(grep -o '"port":[0-9]*,"weight":[0-9]*' <<<"$OUT" | tr '\n' ' ')" = '"port":8443,"weight":1 "port":9443,"weight":1 ' ]; then
	ok "replace -j of a group echoes its targets and weights"
else
	not_ok "replace -j of a group echoes its targets and weights" "got exit $RC: $OUT"
fi
# Nothing listens on 9443: flows whose first choice it is go on to 8443.
for i in $(seq 20); do
	(exec 3<>/dev/tcp/127.0.0.1/443) 2>/dev/null
done
re="^tcp 443 any -> port 8443 weight 1 steered 20 undeliverable 0, port 9443 weight 1 steered 0 undeliverable [1-9][0-9]*; total steered 20 undeliverable 0$"
run -s list
if [ "$RC" = 0 ] && [[ $(head -n 1 <<<"$OUT") =~ $re ]] &&
   [ "$(sed -n 3p <<<"$OUT")" = "tcp 445 any -> port 8443 steered 0 undeliverable 0" ]; then
	ok "-s list: each target's counters, then the rule's"
else
	not_ok "-s list: each target's counters, then the rule's" "$OUT"
fi
run -j list
echo "$OUT" >"$WORK/groups.json"
valid_json "groups fit the schema" "$WORK/groups.json"
check "groups in JSON" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
g, one = r[0], r[2]
assert g["target"] == {"type": "group"}, g
assert [(t["port"], t["weight"]) for t in g["targets"]] == [(8443, 1), (9443, 1)], g
assert g["targets"][0]["stats"] == {"steered": 20, "undeliverable": 0}, g
assert g["targets"][1]["stats"]["steered"] == 0, g
assert g["stats"]["steered"] == 20, g
assert r[1]["targets"][0]["type"] == "socket" and r[1]["targets"][0]["weight"] == 2, r[1]
assert one["target"] == {"type": "port", "port": 8443}, one
assert one["targets"] == [{"type": "port", "port": 8443, "weight": None, "stats": None}], one' "$WORK/groups.json"

expect_out "replace a group with one target" "" replace tcp 443 to port 9443
expect_out "replace one target with a group" "" replace tcp 445 to port 8443 weight 3, port 9443
check "... both listed as they now are" [ "$("$PORTCTL" list | grep -v '^tcp 444')" = "tcp 443 any -> port 9443
tcp 445 any -> port 8443 weight 3, port 9443 weight 1" ]
"$PORTCTL" save >"$WORK/saved"
check "save: a group of ports is one replace line, with its weights" \
	[ "$(grep -v '^#' "$WORK/saved")" = "replace tcp 443 to port 9443
replace tcp 445 to port 8443 weight 3, port 9443 weight 1" ]
check "save: a group with a socket is a comment, with the line to re-add it" \
	grep -qx '# -4 add tcp 444 to pid PID fd FD weight 2, port 9443 weight 1, port 10443 weight 3' "$WORK/saved"
"$PORTCTL" flush
expect_out "... loaded onto an empty table" "" -b "$WORK/saved"
expect_out "... makes the groups of ports again" "tcp 443 any -> port 9443
tcp 445 any -> port 8443 weight 3, port 9443 weight 1" list

lap "$LINENO"
# ---------------------------------------------------------------- metrics

# portctl metrics must be what Prometheus reads (promtool, its own parser
# and linter, when installed) and carry the numbers of -j -s list and
# -j stats, series for series, under labels that stay put from one
# scrape to the next. metrics_check (python3, once at the end of the
# section: it starts slowly in guests) checks every file read here.
METRICS_CHECKS=()
# metrics_file NAME: the output of portctl metrics, exit 0 and nothing on
# stderr, in $WORK/NAME.prom; with the table's JSON beside it, read at
# one moment: metrics between two identical readings of the JSON (a
# closing connection may still be counted after the traffic).
metrics_file() {
	local name=$1 before after i

	for i in $(seq 10); do
		before=$("$PORTCTL" -j -s list; "$PORTCTL" -j stats)
		run metrics
		after=$("$PORTCTL" -j -s list; "$PORTCTL" -j stats)
		[ "$before" = "$after" ] && break
	done
	cp "$WORK/out" "$WORK/$name.prom"
	printf '%s\n' "$before" >"$WORK/$name.json"
	if [ "$RC" = 0 ] && [ -z "$ERR" ] && [ "$before" = "$after" ]; then
		ok "metrics: $name: exit 0"
	else
		not_ok "metrics: $name: exit 0" "exit $RC: $ERR" \
			"the table while it was read: $before" "then: $after"
	fi
	if ! command -v promtool >/dev/null; then
		skip "metrics: $name: promtool check metrics" \
			"needs promtool (Debian's prometheus package)"
	elif promtool check metrics <"$WORK/$name.prom" >"$WORK/promtool" 2>&1; then
		ok "metrics: $name: promtool check metrics"
	else
		not_ok "metrics: $name: promtool check metrics" "$(cat "$WORK/promtool")"
	fi
	METRICS_CHECKS+=("$name")
}

run flush
metrics_file empty

S=$LPID
# A process whose name (comm, 15 bytes at most) holds what a label value
# must escape, and bytes that are not UTF-8.
LISTEN_NAME=$'a"b\\c\nd\xed\xa0\x80' listen tcp4:8090 tcp4:8091 udp4:5400
M=$LPID MB=${LFD[1]} LPID=$S
"$PORTCTL" add tcp 80 to port 8090
"$PORTCTL" add tcp 81 to pid "$M" fd "$MB"
"$PORTCTL" add tcp 443 to port 8090 weight 3, pid "$M" fd "$MB" weight 1
"$PORTCTL" add udp 5000-5010 dst 127.0.0.0/8 to port 5400
for i in 1 2 3; do
	(exec 3<>/dev/tcp/127.0.0.1/80) 2>/dev/null
done
(exec 3<>/dev/tcp/127.0.0.1/81) 2>/dev/null
for i in $(seq 12); do
	(exec 3<>/dev/tcp/127.0.0.1/443) 2>/dev/null
done
for p in 5000 5004 5010; do
	echo x >/dev/udp/127.0.0.1/$p
done
metrics_file rules
for i in 1 2; do
	(exec 3<>/dev/tcp/127.0.0.1/443) 2>/dev/null
done
metrics_file again

if command -v setpriv >/dev/null; then
	run_nobody metrics
	if [ "$RC" = 1 ] && [ ! -s "$WORK/out" ] &&
	   [ "$ERR" = "Error: reading the port table needs CAP_NET_ADMIN." ]; then
		ok "metrics: refused, prints nothing and says why"
	else
		not_ok "metrics: refused, prints nothing and says why" \
			"exit $RC: $ERR" "$(cat "$WORK/out")"
	fi
else
	skip "metrics: refused, prints nothing and says why" "needs setpriv"
fi

python3 - "$WORK" "$M" "$MB" "${METRICS_CHECKS[@]}" >"$WORK/metrics" <<'PY'
import json, re, sys

work, pid, fd, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
FAMILIES = [
    ("portdispatch_rules", "gauge"),
    ("portdispatch_lookups_total", "counter"),
    ("portdispatch_hits_total", "counter"),
    ("portdispatch_misses_total", "counter"),
    ("portdispatch_rules_limit", "gauge"),
    ("portdispatch_udp_flows", "gauge"),
    ("portdispatch_udp_flows_limit", "gauge"),
    ("portdispatch_udp_flows_missed_total", "counter"),
    ("portdispatch_rule_steered_total", "counter"),
    ("portdispatch_rule_undeliverable_total", "counter"),
    ("portdispatch_rule_replies_total", "counter"),
    ("portdispatch_target_steered_total", "counter"),
    ("portdispatch_target_undeliverable_total", "counter"),
    ("portdispatch_target_info", "gauge"),
]
NS = {"lookups": "portdispatch_lookups_total", "hits": "portdispatch_hits_total",
      "misses": "portdispatch_misses_total", "max_rules": "portdispatch_rules_limit",
      "udp_flows": "portdispatch_udp_flows",
      "max_udp_flows": "portdispatch_udp_flows_limit",
      "udp_flows_missed": "portdispatch_udp_flows_missed_total"}
SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([0-9]+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
ESC = {"\\": "\\", '"': '"', "n": "\n"}

def parse(text):
    """Families in order, and {(name, labels): value}; asserts the format."""
    assert text.endswith("\n"), "no line end at the end"
    order, samples, cur = [], {}, None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in [n for n, _ in order], "second HELP for " + name
            order.append((name, None))
            cur = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == cur and order[-1][1] is None, "TYPE without HELP: " + line
            order[-1] = (name, kind)
        else:
            m = SAMPLE.fullmatch(line)
            assert m, "not a sample: " + repr(line)
            assert m[1] == cur, "a sample outside its family: " + line
            labels, pos, raw = {}, 0, m[2] or ""
            while pos < len(raw):
                lm = LABEL.match(raw, pos)
                assert lm, "bad labels: " + raw
                labels[lm[1]] = re.sub(r"\\(.)", lambda e: ESC[e[1]], lm[2])
                pos = lm.end()
            key = (m[1], tuple(sorted(labels.items())))
            assert key not in samples, "two series alike: " + line
            samples[key] = int(m[3])
    return order, samples

def words(t):
    if t["type"] == "port":
        return "port %d" % t["port"]
    if t["type"] == "socket":
        return "pid %d%s%s" % (t["pid"] or 0, " (%s)" % t["comm"] if t["comm"] else "",
                               " fd %d" % t["fd"] if t["fd"] is not None else "")
    return "unknown"

def expected(rules, stats):
    want = {("portdispatch_rules", ()): len(rules)}
    for k, name in NS.items():
        if stats[k] is not None:
            want[(name, ())] = stats[k]
    for r in rules:
        ports = str(r["port_min"]) if r["port_min"] == r["port_max"] else \
            "%d-%d" % (r["port_min"], r["port_max"])
        rl = {"proto": r["proto"], "ports": ports, "prefix": r["dst"] or "",
              "family": r["family"]}
        rk = tuple(sorted(rl.items()))
        for k in ("steered", "undeliverable", "replies"):
            if r["stats"][k] is not None:
                want[("portdispatch_rule_%s_total" % k, rk)] = r["stats"][k]
        for i, t in enumerate(r["targets"]):
            tl = dict(rl, member=str(i), target=words(t))
            if t["weight"] is not None:
                tl["weight"] = str(t["weight"])
            tk = tuple(sorted(tl.items()))
            want[("portdispatch_target_info", tk)] = 1
            # A lone target's counters are its rule's.
            ts = t["stats"] or (r["stats"] if len(r["targets"]) == 1 else None)
            if ts:
                for k in ("steered", "undeliverable"):
                    want[("portdispatch_target_%s_total" % k, tk)] = ts[k]
    return want

def value(samples, name, **labels):
    for (n, l), v in samples.items():
        if n == name and all(dict(l).get(k) == w for k, w in labels.items()):
            return v
    raise AssertionError("no %s %s" % (name, labels))

def check(name):
    text = open("%s/%s.prom" % (work, name), "rb").read().decode("utf-8")
    order, samples = parse(text)
    assert order == FAMILIES, "families: %s" % order
    dec = json.JSONDecoder()
    blob = open("%s/%s.json" % (work, name)).read().strip()
    rules, end = dec.raw_decode(blob)
    stats = json.loads(blob[end:])
    want = expected(rules, stats)
    missing = {k: v for k, v in want.items() if samples.get(k) != v}
    extra = {k: v for k, v in samples.items() if k not in want}
    assert not missing and not extra, "not as in -j -s list: want %s, got extra %s" % (
        sorted(missing.items())[:4], sorted(extra.items())[:4])
    if name == "empty":
        assert samples[("portdispatch_rules", ())] == 0
        return
    comm = 'a"b\\c\nd' + "\ufffd" * 3
    sock = "pid %d (%s) fd %d" % (pid, comm, fd)
    assert '(a\\"b\\\\c\\nd\ufffd\ufffd\ufffd) fd' in text, "escaping"
    steered = lambda **l: value(samples, "portdispatch_rule_steered_total", **l)
    assert steered(ports="80", prefix="", family="any") == 3
    assert steered(ports="81", family="ipv4") == 1
    assert steered(ports="5000-5010", proto="udp", prefix="127.0.0.0/8") == 3
    assert value(samples, "portdispatch_rule_replies_total", ports="5000-5010") == 0
    assert value(samples, "portdispatch_target_info", ports="81", member="0",
                 target=sock) == 1
    g = steered(ports="443")
    assert g == (12 if name == "rules" else 14), g
    members = [value(samples, "portdispatch_target_steered_total", ports="443",
                     member=str(i), target=t, weight=w)
               for i, t, w in ((0, "port 8090", "3"), (1, sock, "1"))]
    assert sum(members) == g, members

for name in names:
    try:
        check(name)
        print("ok metrics: %s: the families and numbers of -j -s list and -j stats" % name)
    except Exception as e:
        print("not ok metrics: %s: the families and numbers of -j -s list and -j stats: %s"
              % (name, str(e).splitlines()[0][:300] if str(e) else type(e).__name__))
# Label sets stay put from one scrape to the next; only values move.
try:
    a = parse(open(work + "/rules.prom").read())[1]
    b = parse(open(work + "/again.prom").read())[1]
    assert a.keys() == b.keys(), set(a) ^ set(b)
    assert a != b and all(b[k] >= a[k] for k in a if k[0].endswith("_total")), "counters"
    print("ok metrics: the same series in the next scrape, counters moved on")
except Exception as e:
    print("not ok metrics: the same series in the next scrape, counters moved on: %s"
          % str(e)[:300])
PY
while IFS= read -r line; do
	case $line in
	"ok "*) ok "${line#ok }" ;;
	"not ok "*) not_ok "${line#not ok }" ;;
	esac
done <"$WORK/metrics"
check "metrics: python3 checked every output" \
	[ "$(grep -c '^ok\|^not ok' "$WORK/metrics")" = $((${#METRICS_CHECKS[@]} + 1)) ]
kill "$M"
wait "$M" 2>/dev/null

lap "$LINENO"
# ---------------------------------------------------------------- monitor

run flush
"$PORTCTL" -j monitor >"$WORK/mon.json" 2>"$WORK/mon.err" &
MONJ=$!
"$PORTCTL" monitor >"$WORK/mon.txt" 2>"$WORK/mon.err2" &
MON=$!
CHILDREN+=("$MONJ" "$MON")
# Subscribed once a probe rule shows up in both.
for i in $(seq $((100 * SCALE))); do
	"$PORTCTL" replace tcp 65535 to port 1
	grep -q '"port_min":65535' "$WORK/mon.json" 2>/dev/null &&
		grep -q 'tcp 65535' "$WORK/mon.txt" 2>/dev/null && break
	sleep 0.2
done
"$PORTCTL" flush
"$PORTCTL" add tcp 80 to port 8080
"$PORTCTL" replace tcp 80 to port 8081
"$PORTCTL" del tcp 80
"$PORTCTL" -4 add tcp 83 to port 8083
"$PORTCTL" -6 add tcp 83 to port 8084
"$PORTCTL" replace tcp 83 to port 8085
"$PORTCTL" del tcp 83
# A group's socket target that closes leaves it: the rule is replaced.
"$PORTCTL" -4 add tcp 84 to pid "$G" fd "$GA" weight 2, port 8086 weight 3
kill "$G"
wait "$G" 2>/dev/null
for i in $(seq $((100 * SCALE))); do
	grep -q '^replaced tcp 84' "$WORK/mon.txt" &&
		grep -q '"event":"replaced","rule":{"id":[0-9]*,"proto":"tcp","port_min":84,' "$WORK/mon.json" && break
	sleep 0.1
done
"$PORTCTL" del tcp 84
"$PORTCTL" add tcp 82 to pid "$LPID" fd "$A"
kill "$LPID"
wait "$LPID" 2>/dev/null
for i in $(seq $((100 * SCALE))); do
	grep -q 'socket closed' "$WORK/mon.txt" &&
		grep -q 'socket_closed' "$WORK/mon.json" && break
	sleep 0.1
done
"$PORTCTL" list >/dev/null	# a dump reaps closed sockets' rules too
# What the socket holds when the signal comes is printed too. Stopped,
# the monitors cannot read these two changes; the signals find them
# queued when they go on.
stopped() {
	local state

	read -r _ _ state _ <"/proc/$1/stat" && [ "$state" = T ]
}
kill -STOP "$MONJ" "$MON"
for i in $(seq $((100 * SCALE))); do
	stopped "$MONJ" && stopped "$MON" && break
	sleep 0.05
done
"$PORTCTL" add tcp 83 to port 1
"$PORTCTL" del tcp 83
kill -TERM "$MONJ"
kill -INT "$MON"
kill -CONT "$MONJ" "$MON"
wait "$MONJ"
rc_j=$?
wait "$MON"
rc_t=$?
check "monitor ends cleanly on SIGTERM" [ "$rc_j" = 0 ]
check "monitor ends cleanly on SIGINT" [ "$rc_t" = 0 ]
sed -i '/65535/d' "$WORK/mon.txt"
expect_text=$(cat <<EOT
flushed 1 rule
added tcp 80 any -> port 8080
replaced tcp 80 any -> port 8081
deleted tcp 80 any -> port 8081 (requested)
added tcp 83 ipv4 -> port 8083
added tcp 83 ipv6 -> port 8084
deleted tcp 83 ipv6 -> port 8084 (replaced)
replaced tcp 83 any -> port 8085
deleted tcp 83 any -> port 8085 (requested)
added tcp 84 ipv4 -> pid $G (python3) fd $GA 127.0.0.1:8443 listening weight 2, port 8086 weight 3
replaced tcp 84 ipv4 -> port 8086 weight 3
deleted tcp 84 ipv4 -> port 8086 weight 3 (requested)
added tcp 82 ipv4 -> pid $LPID (python3) fd $A 127.0.0.1:8080 listening
deleted tcp 82 ipv4 -> pid $LPID (python3) fd $A 127.0.0.1:8080 closed (socket closed)
added tcp 83 any -> port 1
deleted tcp 83 any -> port 1 (requested)
EOT
)
if [ "$(cat "$WORK/mon.txt")" = "$expect_text" ]; then
	ok "monitor text"
else
	not_ok "monitor text" "got:" "$(cat "$WORK/mon.txt")"
fi
valid_json "monitor -j fits the schema" "$WORK/mon.json" lines
check "monitor -j events" python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if "65535" not in l]
got = [(e["event"], e.get("reason")) for e in ev]
want = [("flushed", None), ("added", None), ("replaced", None),
        ("deleted", "requested"), ("added", None), ("added", None),
        ("deleted", "replaced"), ("replaced", None), ("deleted", "requested"),
        ("added", None), ("replaced", None), ("deleted", "requested"),
        ("added", None), ("deleted", "socket_closed"),
        ("added", None), ("deleted", "requested")]
assert got == want, got
assert ev[0]["count"] == 1, ev[0]
g = [t["weight"] for t in ev[9]["rule"]["targets"]], ev[10]["rule"]["targets"]
assert g[0] == [2, 3] and [(t["port"], t["weight"]) for t in g[1]] == [(8086, 3)], g' "$WORK/mon.json"
check "monitor said nothing on stderr" [ ! -s "$WORK/mon.err" ]

lap "$LINENO"
# ---------------------------------------------------------------- batches

run flush
"$PORTCTL" add tcp 80 to port 8080
before=$("$PORTCTL" list)
printf 'add tcp 81 to port 1\nadd tcp 82 to port 1\nadd tcp 83 to porrt 1\n' >"$WORK/b"
expect "batch: syntax error, nothing sent" 2 "$WORK/b:3: "'"porrt" is not a target (expected "pid PID [fd FD]" or "port PORT").' -b "$WORK/b"
check "... and the table is as it was" [ "$("$PORTCTL" list)" = "$before" ]
printf '# refused lines\nadd tcp 81 to port 1\nadd tcp 85-90 to port 1\nadd tcp 86 to port 1\nadd tcp 70000 to port 1\n' >"$WORK/b"
run -b "$WORK/b"
re="^$WORK/b:4: [^${NL}]*\\.${NL}$WORK/b:5: [^${NL}]*70000[^${NL}]*\\.$"
if [ "$RC" = 1 ] && [[ $ERR =~ $re ]]; then
	ok "batch: refused lines are named"
else
	not_ok "batch: refused lines are named" "got exit $RC: $ERR"
fi
check "... and nothing was applied" [ "$("$PORTCTL" list)" = "$before" ]
printf 'flush\nadd tcp 81 to port 1\n-4 add udp 53 dst 192.0.2.0/24 to port 5353\nreplace tcp 81 to port 2\ndel tcp 81\nadd tcp 80 to port 9\n' >"$WORK/b"
expect_out "batch: applied" "" -b "$WORK/b"
expect_out "... all of it" "tcp 80 any -> port 9
udp 53 ipv4 dst 192.0.2.0/24 -> port 5353" list

# A save replaces the rules it names and nothing else: rules added since
# stay, rules changed since are set back, and a flush put first makes the
# table exactly the saved one.
"$PORTCTL" save >"$WORK/saved"
"$PORTCTL" list >"$WORK/before"
check "save: a replace line per rule, no flush" [ "$(grep -v '^#' "$WORK/saved")" = "replace tcp 80 to port 9
-4 replace udp 53 dst 192.0.2.0/24 to port 5353" ]
"$PORTCTL" add tcp 7 to port 7
"$PORTCTL" replace tcp 80 to port 10
expect_out "save, then -b restores" "" -b "$WORK/saved"
expect_out "... the saved rules, and the one added since" "tcp 7 any -> port 7
tcp 80 any -> port 9
udp 53 ipv4 dst 192.0.2.0/24 -> port 5353" list
{ echo flush; cat "$WORK/saved"; } >"$WORK/exact"
expect_out "flush, then the save" "" -b "$WORK/exact"
"$PORTCTL" list >"$WORK/after"
if cmp -s "$WORK/before" "$WORK/after"; then
	ok "... the same table"
else
	not_ok "... the same table" "saved:" "$(cat "$WORK/saved")" "after:" "$(cat "$WORK/after")"
fi

# The header names the host, as the root of a UTS namespace set it: a
# newline in the name must not end the comment and slip in a line.
unshare -u python3 -c 'import os, socket, sys
socket.sethostname(sys.argv[1])
os.execv(sys.argv[2], sys.argv[2:])' $'evil\nflush\n#' "$PORTCTL" save >"$WORK/evil"
if [ "$(grep -v '^#' "$WORK/evil")" = "$(grep -v '^#' "$WORK/saved")" ] &&
   grep -q '^# portdispatch rules of evil?flush?#, saved by portctl' "$WORK/evil"; then
	ok "save: a newline in the host name stays in the comment"
else
	not_ok "save: a newline in the host name stays in the comment" "$(cat "$WORK/evil")"
fi

# A socket rule cannot be saved, only mentioned: loading the save onto the
# table it came from keeps it (and says nothing), and onto an empty table
# makes the port rules alone, without an error.
listen tcp4:8090
"$PORTCTL" add tcp 84 to pid "$LPID" fd "${LFD[0]}"
"$PORTCTL" save >"$WORK/saved"
"$PORTCTL" list >"$WORK/before"
run -b "$WORK/saved"
"$PORTCTL" list >"$WORK/after"
if [ "$RC" = 0 ] && [ -z "$ERR" ] && cmp -s "$WORK/before" "$WORK/after"; then
	ok "save, then -b, with a socket rule alive: the same table"
else
	not_ok "save, then -b, with a socket rule alive: the same table" \
		"exit $RC: $ERR" "saved:" "$(cat "$WORK/saved")" \
		"before:" "$(cat "$WORK/before")" "after:" "$(cat "$WORK/after")"
fi
check "... the file says how to re-add it" grep -q '^# -4 add tcp 84 to pid PID fd FD$' "$WORK/saved"
"$PORTCTL" flush
expect_out "... loaded onto an empty table" "" -b "$WORK/saved"
expect_out "... makes the port rules alone" "tcp 80 any -> port 9
udp 53 ipv4 dst 192.0.2.0/24 -> port 5353" list
kill "$LPID"
wait "$LPID" 2>/dev/null

# 65536 lines in one transaction, in few system calls. A slow machine
# (KSFT_MACHINE_SLOW=yes: the debug kernel, where KASAN and kmemleak watch
# every allocation) takes the same paths with 4096.
BIG=65536
[ "${KSFT_MACHINE_SLOW:-}" = yes ] && BIG=4096
python3 -c '
import sys
big = int(sys.argv[1])
for i in range(1, big):
    print("add udp %d to port 9" % i)
print("-6 add tcp 1 to port 9")' "$BIG" >"$WORK/big"
"$PORTCTL" flush
start=$(date +%s)
if command -v strace >/dev/null; then
	# LeakSanitizer cannot work under ptrace: off for an ASan build.
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		strace -f -qq -e trace=sendto,sendmsg -o "$WORK/strace" \
		"$PORTCTL" -b "$WORK/big"
	RC=$?
	sends=$(grep -c -E '^[0-9]+ +(sendto|sendmsg)\(' "$WORK/strace")
else
	"$PORTCTL" -b "$WORK/big"
	RC=$?
	sends=
fi
secs=$(($(date +%s) - start))
check "$BIG lines load" [ "$RC" = 0 ]
run -j stats
if [[ $OUT == *"\"rules\":$BIG"* ]]; then
	ok "... all of them ($secs s)"
else
	not_ok "... all of them" "$OUT"
fi
if [ -n "$sends" ]; then
	if [ "$sends" -lt 200 ]; then
		ok "... in $sends sends, not one per line"
	else
		not_ok "... in few sends" "$sends sendto/sendmsg calls"
	fi
else
	skip "... in few sends" "needs strace"
fi
"$PORTCTL" -j list >"$WORK/big.json"
check "a dump of $BIG rules" python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))) == int(sys.argv[2])' "$WORK/big.json" "$BIG"
"$PORTCTL" save >"$WORK/bigsaved"
"$PORTCTL" flush
check "save and load $BIG rules" "$PORTCTL" -b "$WORK/bigsaved"
run -j stats
if [[ $OUT == *"\"rules\":$BIG"* ]]; then
	ok "... all of them again"
else
	not_ok "... all of them again" "$OUT"
fi
"$PORTCTL" flush
lap "$LINENO"
check_json
lap "$LINENO"

ktap_report
