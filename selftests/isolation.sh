#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Namespaces do not wait for each other, and an open batch holds back
# neither the reaper nor another namespace:
#
#   namespace A: 65,536 prefixes on tcp 80      namespace B: two rules
#     portctl add/del of prefixes, and            portctl list, and nlctrl's
#     big batch commits, without pause  ....>     CTRL_CMD_GETFAMILY, answer
#     (each takes long in the kernel)             within a bound all along
#
#   pdnl: BATCH_BEGIN, an add, silence  -->  dropped after batch_idle_ms;
#         its next request: ETIMEDOUT        and a batch that talks is not
#   pdnl: a batch open and idle         -->  a closed target's rule is
#                                            still reaped; another
#                                            namespace still changes
#
# pdnl is one netlink socket driven line by line (see pdnl.c).

. "$(dirname "$0")/lib.sh"

NS=

pc() { pcn "$NS" "$@"; }

# ---- pdnl, one netlink socket in a coprocess -----------------------------

# nl_start NAMESPACE: pdnl runs there, its socket open.
nl_start()
{
	coproc NL { ip netns exec "$1" "$PD_BIN/pdnl" 2>&1; }
	defer kill "$NL_PID"
	nl_read 10000 || fail "pdnl did not start"
	check_match "$reply" '^ready ' "pdnl's first line"
}

# nl_read MS: the next line of pdnl into $reply; 1 if none came in time.
nl_read()
{
	IFS= read -r -t "$(($1 / 1000)).$(printf %03d $(($1 % 1000)))" \
		-u "${NL[0]}" reply
}

# nl_q CMD...: send one command, its answer in $reply.
nl_q()
{
	echo "$*" >&"${NL[1]}"
	nl_read 60000 || fail "pdnl did not answer '$*'"
}

# nl CMD...: the same, and say what it was.
nl()
{
	nl_q "$@"
	echo "pdnl: $* -> $reply"
}

nl_ok()
{
	nl "$@"
	check_eq "$reply" ok "pdnl: $*"
}

# ---- test A: another namespace answers while one churns ------------------

# Namespace A never pauses: CHURNERS loops delete one of the 65,536
# prefixes on tcp 80 and add it back, and a loop commits a batch file that
# replaces every prefix PASSES times over, each commit building an event
# for each of its changes for a listener that never reads: seconds in the
# kernel under TCG. While the family ran under
# genl_mutex, every generic netlink request on the host queued behind such
# a commit, and pdnl's lookups below waited that long.
#
# Namespace B's answers are timed two ways. pdnl, one socket that stays
# open, times nlctrl's CTRL_CMD_GETFAMILY and a dump of B's table: only
# the kernel's answer is measured (a few ms, tens when busy), and each
# must come within BOUND_MS. genl ctrl get and portctl list are timed end
# to end too, but a program started from the host's files over 9p can take
# a second on a quiet guest when other guests share the machine (genl
# looks for a ctrl.so plugin in every library directory): they must
# answer right, within TOOL_BOUND_MS.
BOUND_MS=$((1000 * PD_TIME_SCALE))
TOOL_BOUND_MS=$((5000 * PD_TIME_SCALE))
NPREFIX=65536
SAMPLES=40
TOOL_SAMPLES=10
COMMITS=2
RELOAD_N=$NPREFIX
PASSES=1
CHURNERS=2
# The debug kernel takes seconds for what takes tenths here: there the
# test shows that nothing breaks, not how long B waits.
if [ "${KSFT_MACHINE_SLOW:-}" = yes ]; then
	NPREFIX=4096
	SAMPLES=20
	TOOL_SAMPLES=5
	COMMITS=2
	RELOAD_N=1024
	PASSES=1
fi

# prefixes FILE VERB PORT FIRST N: VERB (add or replace) N prefixes of the
# load from the FIRST, 10.X.Y.0/24 for the (256 X + Y)th, on tcp 80 to
# port PORT.
prefixes()
{
	seq "$4" $(($4 + $5 - 1)) |
		awk -v v="$2" -v t="$3" '{ printf "%s tcp 80 dst 10.%d.%d.0/24 to port %d\n", v, int($1 / 256), $1 % 256, t }' > "$1"
}

# Run in namespace B: N times genl ctrl get name nlctrl, then portctl list,
# each on a line "genl|list USEC RC LINES" (LINES: of the listing).
SAMPLER='
portctl=$1 n=$2
for i in $(seq "$n"); do
	t0=${EPOCHREALTIME/./}
	genl ctrl get name nlctrl > /dev/null
	rc=$?
	t1=${EPOCHREALTIME/./}
	echo "genl $((t1 - t0)) $rc 0"
	t0=${EPOCHREALTIME/./}
	out=$("$portctl" list)
	rc=$?
	t1=${EPOCHREALTIME/./}
	echo "list $((t1 - t0)) $rc $(printf "%s\n" "$out" | grep -c .)"
done'

# Run in namespace A: until STOP exists, delete a prefix of the load and
# add it back; COUNT holds "changes N" (those that succeeded: a batch open
# in A refuses some).
CHURN='
portctl=$1 k=$2 stop=$3 count=$4 i=0 ok=0
while [ ! -e "$stop" ]; do
	p=10.$k.$((i % 256)).0/24
	"$portctl" del tcp 80 dst "$p" 2> /dev/null && ok=$((ok + 1))
	"$portctl" add tcp 80 dst "$p" to port 8080 2> /dev/null && ok=$((ok + 1))
	i=$((i + 1))
	echo "changes $ok" > "$count"
done'

# Run in namespace A: until STOP exists, commit the batch FILE; COUNT
# holds "commits N MS" (MS: how long the last portctl -b took).
RELOAD='
portctl=$1 f=$2 stop=$3 count=$4 ok=0
while [ ! -e "$stop" ]; do
	t0=${EPOCHREALTIME/./}
	"$portctl" -b "$f" > /dev/null 2>&1 && ok=$((ok + 1))
	t1=${EPOCHREALTIME/./}
	echo "commits $ok $(((t1 - t0) / 1000))" > "$count"
done'

# tools OUT N: N samples of genl ctrl get and portctl list from namespace B.
tools()
{
	ip netns exec "$B" bash -c "$SAMPLER" sampler "$PORTCTL" "$2" > "$1"
}

# probe OUT: one sample of pdnl's lookup and dump, "genl|list USEC RC RULES".
probe()
{
	local us rest

	nl_q time family nlctrl
	read -r us rest <<< "$reply"
	echo "genl $us $([ "$rest" = ok ] && echo 0 || echo 1) 0" >> "$1"
	nl_q time list
	read -r us rest <<< "$reply"
	echo "list $us $([ "${rest% *}" = ok ] && echo 0 || echo 1) ${rest#ok }" >> "$1"
}

# report FILE KIND: the median and the three worst of KIND, in ms.
report()
{
	awk -v k="$2" '$1 == k { print $2 }' "$1" | sort -n |
		awk '{ v[NR] = $1 } END {
			printf "median %d ms, worst", v[int((NR + 1) / 2)] / 1000
			for (i = NR; i > NR - 3 && i > 0; i--) printf " %d", v[i] / 1000
			printf " ms (%d samples)\n", NR }'
}

# worst FILE KIND: the longest sample of KIND, in ms.
worst()
{
	awk -v k="$2" '$1 == k && $2 > m { m = $2 } END { print int(m / 1000) }' "$1"
}

# answers_right FILE RULES: every sample answered, every listing RULES long.
answers_right()
{
	awk '$3 != 0 { exit 1 }' "$1" ||
		fail "a request in namespace B failed: $(awk '$3 != 0' "$1" | head -n 3)"
	awk -v n="$2" '$1 == "list" && $4 != n { exit 1 }' "$1" ||
		fail "namespace B's listing did not show its $2 rules: $(awk -v n="$2" '$1 == "list" && $4 != n' "$1" | head -n 3)"
}

# within FILE BOUND_MS WHAT: no sample of FILE took longer.
within()
{
	local kind

	for kind in genl list; do
		[ "$(worst "$1" "$kind")" -le "$2" ] ||
			fail "$3: namespace B waited $(worst "$1" "$kind") ms for $kind (bound $2 ms)"
	done
}

test_other_namespace_answers()
{
	local A B stop load reload restore quiet busy tquiet tbusy t0 t1 k p
	local commits c0 deadline n _ ms
	local -a counts pids

	setup_ns A B
	pcn "$B" add tcp 81 to port 8081
	pcn "$B" add udp 53 to port 5353
	stop=$(mktemp -u) load=$(mktemp) reload=$(mktemp) restore=$(mktemp)
	quiet=$(mktemp) busy=$(mktemp) tquiet=$(mktemp) tbusy=$(mktemp)
	defer rm -f "$stop" "$load" "$reload" "$restore" "$quiet" "$busy" \
		"$tquiet" "$tbusy"
	prefixes "$load" add 8080 0 "$NPREFIX"
	# To ports 8081, 8082... and back to 8080 last.
	for p in $(seq "$PASSES"); do
		prefixes "$restore" replace $((8080 + p % PASSES)) 0 "$RELOAD_N"
		cat "$restore" >> "$reload"
	done
	# Churner K deletes and adds back 10.K.0.0/24 to 10.K.255.0/24.
	prefixes "$restore" replace 8080 256 $((256 * CHURNERS))
	nl_start "$B"

	echo "bound: $BOUND_MS ms for each answer to pdnl in namespace B, $TOOL_BOUND_MS ms for genl and portctl"
	for n in $(seq 20); do
		probe "$quiet"
	done
	tools "$tquiet" "$TOOL_SAMPLES"
	echo "quiet: pdnl lookup:     $(report "$quiet" genl)"
	echo "quiet: pdnl dump:       $(report "$quiet" list)"
	echo "quiet: genl ctrl get:   $(report "$tquiet" genl)"
	echo "quiet: portctl list:    $(report "$tquiet" list)"
	answers_right "$quiet" 2
	answers_right "$tquiet" 2
	for k in genl list; do
		[ $(($(worst "$quiet" "$k") * 2)) -le "$BOUND_MS" ] ||
			fail "a quiet pdnl $k already takes $(worst "$quiet" "$k") ms: this machine is too slow for a bound of $BOUND_MS ms"
	done

	t0=${EPOCHREALTIME/./}
	pcn "$A" -b "$load"
	t1=${EPOCHREALTIME/./}
	check_eq "$(ns_stat rules "$A")" "$NPREFIX" "rules in namespace A"
	echo "namespace A: $NPREFIX prefixes on tcp 80 loaded in $(((t1 - t0) / 1000)) ms"
	t0=${EPOCHREALTIME/./}
	pcn "$A" del tcp 80 dst 10.0.0.0/24
	pcn "$A" add tcp 80 dst 10.0.0.0/24 to port 8080
	t1=${EPOCHREALTIME/./}
	echo "namespace A: one del and one add took $(((t1 - t0) / 1000)) ms"

	# A listener that never reads: every commit builds its events.
	printf 'join\nsleep 3600000\n' | ip netns exec "$A" "$PD_BIN/pdnl" > /dev/null &
	defer kill $!

	defer touch "$stop"
	for k in $(seq 0 "$CHURNERS"); do
		counts[k]=$(mktemp)
		defer rm -f "${counts[k]}"
		if [ "$k" -eq 0 ]; then
			ip netns exec "$A" bash -c "$RELOAD" reload "$PORTCTL" "$reload" "$stop" "${counts[k]}" &
		else
			ip netns exec "$A" bash -c "$CHURN" churn "$PORTCTL" "$k" "$stop" "${counts[k]}" &
		fi
		pids[k]=$!
		defer kill $!
	done
	busywait 60000 grep -q 'changes [1-9]' "${counts[1]}" ||
		fail "namespace A made no change"

	# Until A has committed COMMITS whole batches, and SAMPLES at least.
	c0=$(awk '{ print $2 }' "${counts[0]}" 2> /dev/null)
	deadline=$((${EPOCHREALTIME/./} / 1000 + 300000))
	n=0
	while :; do
		probe "$busy"
		n=$((n + 1))
		read -r _ commits ms < "${counts[0]}" || commits=0
		[ "$n" -ge "$SAMPLES" ] && [ "$commits" -ge $((${c0:-0} + COMMITS)) ] && break
		[ $((${EPOCHREALTIME/./} / 1000)) -lt "$deadline" ] ||
			fail "namespace A committed $((commits - ${c0:-0})) batches in 300 s, $n samples"
		nl_q sleep 50
	done
	echo "namespace A: $((commits - ${c0:-0})) batch commits while pdnl sampled, the last portctl -b took $ms ms; $(cat "${counts[@]:1}" | awk '{ n += $2 } END { print n }') single changes in all"
	tools "$tbusy" "$TOOL_SAMPLES"
	touch "$stop"

	echo "busy: pdnl lookup:     $(report "$busy" genl)"
	echo "busy: pdnl dump:       $(report "$busy" list)"
	echo "busy: genl ctrl get:   $(report "$tbusy" genl)"
	echo "busy: portctl list:    $(report "$tbusy" list)"
	answers_right "$busy" 2
	answers_right "$tbusy" 2
	within "$busy" "$BOUND_MS" "pdnl, while A was busy"
	within "$tbusy" "$TOOL_BOUND_MS" "the tools, while A was busy"
	# A is whole once the churn is over and a last batch has put back
	# what a refused add left out.
	wait "${pids[@]}"
	pcn "$A" -b "$restore"
	check_eq "$(ns_stat rules "$A")" "$NPREFIX" "rules in namespace A after the churn"
	# Freed now rather than behind the next test's back, when the
	# namespace goes.
	t0=${EPOCHREALTIME/./}
	pcn "$A" flush
	t1=${EPOCHREALTIME/./}
	echo "namespace A: flushed in $(((t1 - t0) / 1000)) ms"
}

# ---- test B: an idle batch is dropped ------------------------------------

# batch_dropped: until pdnl's idle batch is dropped, which lets another
# socket change the table again (the probe leaves no rule behind); for
# three times batch_idle_ms at most.
batch_dropped()
{
	busywait 1500 _admitted ||
		fail "a batch idle for 1500 ms still kept other writers out: $(pc add tcp 3999 to port 1 2>&1)"
}

_admitted()
{
	pc add tcp 3999 to port 1 > /dev/null 2>&1 && pc del tcp 3999
}

test_idle_batch_dropped()
{
	local other i

	setup_ns NS
	set_param batch_idle_ms 500
	nl_start "$NS"

	# A batch whose owner falls silent: within three times batch_idle_ms,
	# another socket is not kept out.
	nl_ok begin
	nl_ok add tcp 1000 8000
	batch_dropped
	pc add tcp 3000 to port 3001
	nl commit
	check_eq "$reply" "error ETIMEDOUT the batch was dropped after 500 ms idle: nothing in it was applied" \
		"COMMIT of a batch left idle"
	check_eq "$(pc list)" "tcp 3000 any -> port 3001" "the table after the dropped batch"
	# One error, and the socket works normally again.
	nl_ok add tcp 1001 8001
	nl commit
	check_match "$reply" '^error EINVAL .*no batch open' "COMMIT without a batch, after the notice"

	# A change that the owner still sends for the dropped batch is refused,
	# not applied alone; so is every one after it, until the owner ends
	# the batch itself.
	nl_ok begin
	nl_ok add tcp 1002 8002
	batch_dropped
	nl add tcp 1003 8003
	check_eq "$reply" "error ETIMEDOUT the batch was dropped after 500 ms idle: nothing in it was applied" \
		"an add after the batch was dropped"
	nl del tcp 1001
	check_eq "$reply" "error ETIMEDOUT the batch was dropped after 500 ms idle: nothing in it was applied" \
		"a second change after the batch was dropped"
	check_eq "$(pc list)" "$(printf '%s\n' 'tcp 1001 any -> port 8001' 'tcp 3000 any -> port 3001')" \
		"the table after the second dropped batch"
	nl abort
	check_eq "$reply" "error ETIMEDOUT the batch was dropped after 500 ms idle: nothing in it was applied" \
		"ABORT of the dropped batch"
	nl_ok add tcp 1003 8003
	nl abort
	check_match "$reply" '^error EINVAL .*no batch open' "ABORT without a batch, after the notice"

	# Two owners dropped in turn: the second's drop does not erase the
	# first's, whose next add is still refused, not applied alone.
	nl_ok begin
	nl_ok add tcp 1004 8004
	batch_dropped
	other=$(printf '%s\n' begin 'add tcp 1005 8005' "sleep $((1500 * PD_TIME_SCALE))" commit |
		ip netns exec "$NS" "$PD_BIN/pdnl" 2>&1)
	echo "another socket's batch: $other"
	check_match "$other" 'error ETIMEDOUT the batch was dropped' \
		"COMMIT of the other socket's idle batch"
	nl add tcp 1006 8006
	check_eq "$reply" "error ETIMEDOUT the batch was dropped after 500 ms idle: nothing in it was applied" \
		"an add of the first owner, after another batch was dropped"
	nl abort
	check_match "$reply" '^error ETIMEDOUT' "ABORT of the first owner's dropped batch"
	check_no_match "$(pc list)" 'tcp 100[456] ' "the table after two dropped batches"

	# A batch that speaks every 200 ms lives on past batch_idle_ms: ten
	# adds over two seconds, twice the idle time (and five times the
	# longest silence, for a guest that stalls now and then).
	echo 1000 > "$PD_PARAMS/batch_idle_ms"
	nl_ok begin
	for i in 0 1 2 3 4 5 6 7 8 9; do
		nl_ok add udp $((2000 + i)) 9000
		nl_ok sleep 200
	done
	nl_ok commit
	check_eq "$(pc list | grep -c '^udp 200[0-9] any -> port 9000$')" 10 \
		"rules of the batch that kept talking"
}

# ---- test C: an open batch does not stop the reaper ----------------------

# The reaper looks every half second (busywait scales the bound).
REAP_MS=2000

test_reaper_runs_during_batch()
{
	local srv pid fd

	setup_ns NS
	set_param batch_idle_ms 60000
	srv=$(mktemp)
	defer rm -f "$srv"
	ip netns exec "$NS" "$PD_BIN/pdsock" serve -u -b 127.0.0.1 -p 7000 > "$srv" &
	pid=$!
	defer kill "$pid"
	busywait "$START_MS" grep -q '^ready' "$srv" || fail "server did not start"
	fd=$(sed -n 's/^ready.* fd=\([0-9]*\).*/\1/p' "$srv")
	pc add udp 5000 to pid "$pid" fd "$fd"
	pc add tcp 80 to port 8080

	nl_start "$NS"
	nl_ok begin
	nl_ok add tcp 1000 8000
	# The batch holds the namespace ...
	expect_status 1 pc add tcp 81 to port 8081
	check_match "$out" 'batch .* in progress' "an add beside the open batch"

	# ... and the target's process exits: its rule goes all the same.
	# portctl stats, unlike a listing, does not reap by itself.
	kill "$pid"
	wait "$pid" 2> /dev/null || true
	busywait "$REAP_MS" eval '[ "$(ns_stat rules)" = 1 ]' ||
		fail "the rule of the closed socket stayed with a batch open: $(pc list)"
	check_eq "$(pc list)" "tcp 80 any -> port 8080" "the table after the reaper, batch open"

	# The batch was not disturbed: it commits, its rule appears.
	nl_ok add tcp 1001 8001
	nl_ok commit
	check_eq "$(pc list)" "$(printf '%s\n' 'tcp 80 any -> port 8080' 'tcp 1000 any -> port 8000' 'tcp 1001 any -> port 8001')" \
		"the table after the batch committed"
}

# ---- test D: an open batch in one namespace, another changes -------------

# timed CMD...: CMD succeeds within TOOL_BOUND_MS.
timed()
{
	local t0 t1 ms

	t0=${EPOCHREALTIME/./}
	"$@" || fail "'$*' failed"
	t1=${EPOCHREALTIME/./}
	ms=$(((t1 - t0) / 1000))
	echo "$ms ms: ${*:2}"
	[ "$ms" -le "$TOOL_BOUND_MS" ] || fail "'${*:2}' took $ms ms (bound $TOOL_BOUND_MS ms)"
}

test_batch_does_not_block_other_namespace()
{
	local A B

	setup_ns A B
	set_param batch_idle_ms 60000
	nl_start "$A"
	nl_ok begin
	nl_ok add tcp 1000 8000
	expect_status 1 pcn "$A" add tcp 81 to port 8081
	check_match "$out" 'batch .* in progress' "an add in the batch's namespace"

	timed pcn "$B" add tcp 81 to port 8081
	timed pcn "$B" del tcp 81
	timed pcn "$B" add tcp 82 to port 8082
	check_eq "$(pcn "$B" list)" "tcp 82 any -> port 8082" "namespace B's table"
	check_eq "$(pcn "$A" list)" "" "namespace A's table, its batch open"

	nl_ok commit
	check_eq "$(pcn "$A" list)" "tcp 1000 any -> port 8000" "namespace A's table after COMMIT"
}

ktap_plan 4
run_test "another namespace answers while one loads and churns $NPREFIX prefixes" test_other_namespace_answers
run_test "an idle batch is dropped, and its owner is told" test_idle_batch_dropped
run_test "an open batch does not stop the reaper" test_reaper_runs_during_batch
run_test "an open batch in one namespace does not block another namespace" test_batch_does_not_block_other_namespace
ktap_finish
