#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The wire contract, proven by a client that nobody here wrote: the
# kernel's own generic netlink CLI (tools/net/ynl/cli.py, from Debian's
# linux-source-6.12 package) drives the module through uapi/portdispatch.yaml.
#
#   cli.py --spec portdispatch.yaml --do rule-add ...  --> portdispatch.ko
#                                                           |
#   client --> 127.0.0.1:80 ------------------------------> pdsock on :8080

. "$(dirname "$0")/lib.sh"

SRC=$PD_CACHE/src/linux-source-6.12
SPEC=$TOP/uapi/portdispatch.yaml

# Validating the spec against the genetlink schema is slow under TCG:
# the first test does it, the others trust it.
ynl_validating()
{
	python3 "$SRC/tools/net/ynl/cli.py" --spec "$SPEC" \
		--schema "$SRC/Documentation/netlink/genetlink.yaml" \
		--output-json "$@"
}

ynl()
{
	python3 "$SRC/tools/net/ynl/cli.py" --spec "$SPEC" --no-schema \
		--output-json "$@"
}

# Looked up once, without importing them: importing jsonschema alone
# takes seconds in a guest.
YNL_MISSING=
if [ ! -f "$SRC/tools/net/ynl/cli.py" ]; then
	YNL_MISSING="no ynl at $SRC/tools/net/ynl (linux-source-6.12 not unpacked; run scripts/setup)"
elif ! python3 -c 'import importlib.util as u, sys
sys.exit(not (u.find_spec("yaml") and u.find_spec("jsonschema")))'; then
	YNL_MISSING="ynl needs python3-yaml and python3-jsonschema"
fi

require_ynl()
{
	[ -z "$YNL_MISSING" ] || skip "$YNL_MISSING"
}

test_add_dump_list()
{
	require_ynl
	defer "$PORTCTL" flush
	ynl_validating --do rule-add --json '{"proto": 6, "port-min": 80, "port-max": 89, "target": {"port": 8080}}'

	out=$(ynl --dump rule-get)
	check_match "$out" '"port-min": 80' "ynl dump"
	check_match "$out" '"port-max": 89' "ynl dump"
	# RULE_TARGET is multi-attr: ynl gives a list, of one here.
	check_match "$out" '"target": \[\{"port": 8080\}\]' "ynl dump"
	expect_status 0 "$PORTCTL" list
	check_match "$out" '^tcp 80-89 .*port 8080' "portctl list of the rule ynl added"
}

test_rule_steers()
{
	local srv_out

	require_ynl
	defer "$PORTCTL" flush
	srv_out=$(mktemp)
	defer rm -f "$srv_out"
	"$PD_BIN/pdsock" serve -b 127.0.0.1 -p 8080 > "$srv_out" &
	defer kill $!
	busywait "$START_MS" grep -q '^ready' "$srv_out" || fail "server did not start"

	ynl --do rule-add --json '{"proto": 6, "port-min": 80, "target": {"port": 8080}}'
	expect_status 0 "$PD_BIN/pdsock" connect -a 127.0.0.1 -p 80
	busywait 3000 grep -q '^accept local=127.0.0.1:80 ' "$srv_out" ||
		fail "the rule ynl added did not steer: $(cat "$srv_out")"
}

test_refusal_carries_extack()
{
	require_ynl
	expect_status 1 ynl --do rule-add --json '{"proto": 6, "port-min": 70000, "target": {"port": 8080}}'
	check_match "$out" 'port 70000 is out of range 1-65535' "ynl's error"
	expect_status 0 "$PORTCTL" list
	check_eq "$out" "" "table after a refused add"
}

test_batch_with_multi()
{
	require_ynl
	defer "$PORTCTL" flush
	ynl --multi batch-begin '{}' \
	    --multi rule-add '{"proto": 17, "port-min": 53, "target": {"port": 5353}}' \
	    --multi rule-add '{"proto": 6, "port-min": 443, "family": 10, "target": {"port": 8443}}' \
	    --multi batch-commit '{}'

	expect_status 0 "$PORTCTL" list
	check_match "$out" '^udp 53 .*port 5353' "rule from the batch"
	check_match "$out" '^tcp 443 ipv6 .*port 8443' "rule from the batch"
}

# A list for the multi-attr RULE_TARGET: one nest per target, each with
# its weight; dumped back with each target's counters.
test_group()
{
	require_ynl
	defer "$PORTCTL" flush
	ynl --do rule-add --json '{"proto": 6, "port-min": 443, "target": [{"port": 8443, "weight": 9}, {"port": 9443, "weight": 1}]}'

	out=$(ynl --dump rule-get)
	check_match "$out" '"target": \[\{"port": 8443, "weight": 9, "stats": \{"steered": 0, "undeliverable": 0\}\}, \{"port": 9443, "weight": 1, "stats": \{' "ynl dump of a group"
	expect_status 0 "$PORTCTL" list
	check_eq "$out" "tcp 443 any -> port 8443 weight 9, port 9443 weight 1" "portctl list of the group ynl added"
}

# ynl 6.12 cannot take a notification on the socket it is doing a request
# on (ynl.py's _ops() loses track of the request), so the listener is a
# separate ynl process, and the changes are made until it has heard them.
test_events()
{
	local ntf listener

	require_ynl
	defer "$PORTCTL" flush
	ntf=$(mktemp)
	defer rm -f "$ntf"
	ynl --subscribe events --sleep 8 > "$ntf" 2>&1 &
	listener=$!
	defer kill "$listener"
	while kill -0 "$listener" 2>/dev/null; do
		"$PORTCTL" add tcp 8000 to port 9000
		"$PORTCTL" del tcp 8000
		sleep 0.2
	done
	wait "$listener" || fail "ynl --subscribe failed: $(cat "$ntf")"
	out=$(cat "$ntf")
	check_match "$out" '"name": "rule-add-ntf"' "notification"
	check_match "$out" '"name": "rule-del-ntf"' "notification"
	check_match "$out" '"port-min": 8000' "notification's rule"
	check_match "$out" '"reason": "request"' "deletion's reason"
}

test_stats()
{
	require_ynl
	defer "$PORTCTL" flush
	ynl --do rule-add --json '{"proto": 6, "port-min": 80, "target": {"port": 8080}}'
	out=$(ynl --do stats-get)
	check_match "$out" '"rules": 1' "stats-get"
	check_match "$out" '"max-rules": [0-9]+' "stats-get"
}

ktap_plan 7
run_test "the spec validates; a rule added by ynl is dumped by ynl and listed by portctl" test_add_dump_list
run_test "a rule added by ynl steers a connection" test_rule_steers
run_test "ynl gets the kernel's refusal as extack" test_refusal_carries_extack
run_test "a group added by ynl, a list of targets with weights, is dumped and listed" test_group
run_test "a batch sent with ynl --multi applies" test_batch_with_multi
run_test "ynl receives the events group's notifications" test_events
run_test "ynl reads the namespace counters" test_stats
ktap_finish
