#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Limits for a host whose namespaces belong to different tenants: what a
# tenant's requests allocate is charged to its memory cgroup, a cgroup at
# its memory.max is refused cleanly, and the rule limits hold per
# namespace (max_rules) and across the host (max_rules_total):
#
#   cgroup LOADER --portctl -b--> namespace NS: 65,536 rules
#        memory.current grows by what the kernel allocated for them
#
#   namespace A: 3 rules  \
#                          >-- max_rules_total=5: the next add anywhere fails
#   namespace B: 2 rules  /
#
# cgroup2 is mounted here on a directory of our own (the guests mount
# none) and unmounted at the end of each test.

. "$(dirname "$0")/lib.sh"

CGROOT=
NS=
dmesg_mark=0

pc() { pcn "$NS" "$@"; }

# A cgroup's limits here are aimed at what the kernel allocates: an ASan
# build of portctl (selftests/run --asan) brings a shadow and a quarantine
# of its own that no limit can be aimed past, so the loads inside cgroups
# use the plain build.
CG_PORTCTL=${PORTCTL_PLAIN:-$PORTCTL}

# room_for N: max_rules, and max_rules_total where it exists, hold N rules
# in one namespace beside what other namespaces hold.
room_for()
{
	[ "$(cat "$PD_PARAMS/max_rules")" -ge "$1" ] || set_param max_rules "$1"
	if [ -e "$PD_PARAMS/max_rules_total" ] &&
	   [ "$(cat "$PD_PARAMS/max_rules_total")" -lt $(($1 + 4096)) ]; then
		set_param max_rules_total $(($1 + 4096))
	fi
}

# gen_rules FILE N OCTET: a batch file of N (at most 65,536) UDP rules on
# port 53, one for each of 10.OCTET.0.0 to 10.OCTET.255.255.
gen_rules()
{
	seq 0 $(($2 - 1)) |
		awk -v o="$3" '{ printf "add udp 53 dst 10.%d.%d.%d/32 to port 5353\n", o, int($1 / 256), $1 % 256 }' > "$1"
}

# ns_rules [NAMESPACE]: how many rules its table holds.
ns_rules()
{
	local k v

	while read -r k v; do
		[ "$k" = rules ] && { echo "$v"; return; }
	done <<< "$(pcn "${1:-$NS}" stats)"
	return 1
}

# --- memory cgroups ---

# require_memcg: cgroup2 mounted on CGROOT, with the memory controller
# enabled for its children; skips where the kernel has neither.
require_memcg()
{
	require_root
	CGROOT=$(mktemp -d)
	defer rmdir "$CGROOT"
	mount -t cgroup2 none "$CGROOT" 2>/dev/null ||
		skip "the kernel has no cgroup2 (CONFIG_CGROUPS)"
	defer umount "$CGROOT"
	grep -qw memory "$CGROOT/cgroup.controllers" ||
		skip "cgroup2 has no memory controller (CONFIG_MEMCG off, cgroup_disable=memory, or memory bound to cgroup v1)"
	if ! grep -qw memory "$CGROOT/cgroup.subtree_control"; then
		echo +memory > "$CGROOT/cgroup.subtree_control"
		defer sh -c 'echo -memory > "$1/cgroup.subtree_control"' sh "$CGROOT"
	fi
}

# cg_new VAR...: a child cgroup per VAR, its path in VAR; removed at the end.
cg_new()
{
	local var dir

	for var in "$@"; do
		dir=$(mktemp -u -d "$CGROOT/$var-XXXXXX")
		mkdir "$dir"
		defer rmdir "$dir"
		[ -e "$dir/memory.current" ] || fail "$dir has no memory.current"
		eval "$var=\$dir"
	done
}

# in_cg CGROUP CMD...: run CMD as a process of CGROUP.
in_cg()
{
	sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$@"
}

cg_read() { cat "$1/memory.$2"; }

# cg_event CGROUP KEY: a counter from memory.events (oom, oom_kill, max).
cg_event()
{
	awk -v k="$2" '$1 == k { print $2 }' "$1/memory.events"
}

cg_stat()
{
	grep -E '^(anon|file|kernel|kernel_stack|pagetables|percpu|sock|vmalloc|slab|slab_unreclaimable) ' "$1/memory.stat" | tr '\n' ' '
	echo
}

# kmem: what the kernel holds, in bytes: "OBJECTS PAGES LEAK SLAB PERCPU
# VMALLOC". OBJECTS: the objects in use in every slab cache but
# kmemleak's own records (the debug kernel); PAGES: the slab caches' pages
# (Slab also counts kmalloc()s too large for a cache, and those alone);
# LEAK: kmemleak's pages; then /proc/meminfo's Slab, Percpu and
# VmallocUsed (kvmalloc() falls back to vmalloc).
kmem()
{
	awk -v page="$(getconf PAGESIZE)" '
		FILENAME == "/proc/slabinfo" {
			if (FNR <= 2)
				next
			pages += $15 * $6 * page
			if ($1 == "kmemleak_object")
				leak += $15 * $6 * page
			else
				obj += $2 * $4
			next
		}
		$1 == "Slab:" { slab = $2 * 1024 }
		$1 == "Percpu:" { pcpu = $2 * 1024 }
		$1 == "VmallocUsed:" { vm = $2 * 1024 }
		END { printf "%d %d %d %d %d %d\n", obj, pages, leak, slab, pcpu, vm }' \
		/proc/slabinfo /proc/meminfo
}

# settle: let deferred frees happen (RCU, work items), then have every
# slab cache give back its empty slabs (and KASAN's quarantine), so that
# Slab counts objects in use, not what transients left behind.
settle()
{
	local f

	sleep 1
	for f in /sys/kernel/slab/*/shrink; do
		echo 1 > "$f"
	done 2>/dev/null || true
}

# memory_sentence OUTPUT WHAT: portctl printed the kernel's explanation of
# a refusal for lack of memory, not just strerror(ENOMEM).
memory_sentence()
{
	local said

	said=$(printf '%s\n' "$1" | grep -Ei '^(Error: |.+:[0-9]+: ).*memory' | grep -v 'Cannot allocate memory' || true)
	[ -n "$said" ] || fail "$2: no sentence from the kernel about memory in: $1"
	echo "$2 said: $(printf '%s\n' "$said" | head -n 1)"
}

# at_limit OUTVAR CGROUP CMD...: run CMD in CGROUP, which is about to meet
# its memory.max; its status in $rc, its standard error in OUTVAR. The
# error goes to a file whose pages the test's own cgroup paid for
# beforehand: a pipe, or a new page of a file, would be charged to CGROUP
# when portctl writes its error, and at the limit that page fault calls
# the OOM killer whatever the module does.
at_limit()
{
	local var=$1 cg=$2 errf

	shift 2
	errf=$(mktemp)
	dmesg_mark=$(dmesg | wc -l)
	dd if=/dev/zero of="$errf" bs=64k count=1 status=none
	rc=0
	in_cg "$cg" "$@" > /dev/null 2<> "$errf" || rc=$?
	printf -v "$var" '%s' "$(tr -d '\0' < "$errf")"
	rm -f "$errf"
}

# no_oom_kill CGROUP WHAT: the cgroup's OOM killer did not run.
no_oom_kill()
{
	local kills

	kills=$(cg_event "$1" oom_kill)
	[ "${kills:-0}" -eq 0 ] || {
		dmesg | tail -n +$((dmesg_mark + 1)) |
			grep -E 'invoked oom-killer|Memory cgroup out of memory|vmalloc error|page allocation failure' | head -n 4
		fail "$2: the memory cgroup's OOM killer ran ($kills kills) instead of the request failing with ENOMEM"
	}
}

# The kernel charges a slab object, not the page it sits in, so a load
# that left slab pages partly used would be charged less than the host
# gave up. The cgroup's growth is held against the growth of whole pages
# (Slab + Percpu + VmallocUsed, kmemleak's own left out), as the issue
# measured it; the objects allocated (slab objects, kmalloc()s past the
# caches, per-CPU, vmalloc) are printed beside.
test_charged_to_cgroup()
{
	local n=65536 f c0 c1 dc alloc pages
	local o0 p0 l0 s0 u0 v0 o1 p1 l1 s1 u1 v1

	[ "${KSFT_MACHINE_SLOW:-}" = yes ] && n=4096
	require_memcg
	[ -r /proc/slabinfo ] || skip "no /proc/slabinfo"
	cg_new LOADER
	setup_ns NS
	room_for "$n"
	f=$(mktemp)
	defer rm -f "$f"
	gen_rules "$f" "$n" 0
	check_eq "$(ns_rules)" 0 "rules before loading"

	settle
	read -r o0 p0 l0 s0 u0 v0 <<< "$(kmem)"
	c0=$(cg_read "$LOADER" current)
	in_cg "$LOADER" ip netns exec "$NS" "$CG_PORTCTL" -b "$f"
	settle
	read -r o1 p1 l1 s1 u1 v1 <<< "$(kmem)"
	c1=$(cg_read "$LOADER" current)
	check_eq "$(ns_rules)" "$n" "rules after loading"

	dc=$((c1 - c0))
	alloc=$((o1 - o0 + (s1 - p1) - (s0 - p0) + u1 - u0 + v1 - v0))
	pages=$((s1 - s0 - (l1 - l0) + u1 - u0 + v1 - v0))
	echo "$n rules, growth in bytes: slab objects $((o1 - o0)), kmalloc past the caches $((s1 - p1 - s0 + p0)), percpu $((u1 - u0)), vmalloc $((v1 - v0)); slab pages $((s1 - s0)) (kmemleak's $((l1 - l0)))"
	echo "allocated $alloc ($((alloc / n)) a rule), in pages $pages ($((pages / n)) a rule); the cgroup's memory.current +$dc ($((dc / n)) a rule)"
	echo "charged: $((dc * 100 / (alloc > 0 ? alloc : 1)))% of the objects allocated, $((dc * 100 / (pages > 0 ? pages : 1)))% of the pages"
	echo "memory.stat: $(cg_stat "$LOADER")"
	# Objects also fill slabs that were partly free before the load: on
	# the debug kernel (quarantine, redzones, kmemleak scanning) that makes
	# them swing, between 94% and 96% of the pages for the same charge of
	# 628 bytes a rule (2026-11-29), against 99% on Debian's kernels.
	# Either bound still catches a rule's 256 bytes left uncharged.
	[ "$pages" -gt 0 ] || fail "the kernel's memory did not grow"
	local min=95
	[ "${KSFT_MACHINE_SLOW:-}" = yes ] && min=90
	[ $((dc * 100)) -ge $((pages * min)) ] ||
		fail "the loader's cgroup was charged $dc bytes of the $pages the kernel's memory grew by (less than $min%)"
}

test_batch_memory_max()
{
	local n=65536 f bad before peak c0 max rc err

	require_memcg
	cg_new LOADER PROBE
	setup_ns NS
	room_for $((n + 16))
	pc add tcp 80 to port 8080
	pc -6 add tcp 443 to port 8443
	pc add udp 53 dst 192.0.2.0/24 to port 5353
	before=$(pc list)
	f=$(mktemp) bad=$(mktemp)
	defer rm -f "$f" "$bad"
	gen_rules "$f" "$n" 1

	# What portctl itself needs for the file: the same file with a
	# malformed last line is read and parsed whole, then nothing is sent.
	{ cat "$f"; echo "add udp 53 dst not-an-address to port 5353"; } > "$bad"
	expect_status 2 in_cg "$PROBE" ip netns exec "$NS" "$CG_PORTCTL" -b "$bad"
	peak=$(cg_read "$PROBE" peak)

	c0=$(cg_read "$LOADER" current)
	max=$(((c0 + peak + 2 * 1024 * 1024) / 4096 * 4096))
	echo "portctl alone peaks at $peak bytes; memory.max = $max (memory.current $c0)"
	echo "$max" > "$LOADER/memory.max"
	at_limit err "$LOADER" ip netns exec "$NS" "$CG_PORTCTL" -b "$f"
	echo "portctl -b exited $rc; memory.events: $(tr '\n' ' ' < "$LOADER/memory.events")"
	printf '%s\n' "$err" | head -n 3
	no_oom_kill "$LOADER" "a batch of $n rules beyond memory.max"
	[ "$rc" -ne 0 ] || fail "a batch of $n rules loaded within memory.max=$max"
	[ "$rc" -eq 1 ] || fail "portctl -b exited $rc, expected 1"
	memory_sentence "$err" "the batch"
	check_eq "$(pc list)" "$before" "the table after the refused batch"

	echo max > "$LOADER/memory.max"
	busywait 10000 sh -c '[ $(cat "$1/memory.current") -le $2 ]' sh "$LOADER" $((c0 + 1024 * 1024)) ||
		fail "memory.current stayed at $(cg_read "$LOADER" current) after the refused batch (was $c0)"
	echo "memory.current after the refused batch: $(cg_read "$LOADER" current) (was $c0)"
}

# A lone add of a prefix beside others of its length is written in place:
# a few hundred bytes, too few to aim a limit at. This add brings a new
# prefix length to a port with PRE prefixes, whose port set is then built
# anew, in memory in proportion. Two probes measure the peak of portctl
# alone (the same kind of add, refused as a conflict) and with the add;
# the limit leaves the add half of what it needs.
test_add_memory_max()
{
	local pre=32768 rule="udp 53 dst 10.3.0.0/24" f sum base need c0 max rc err

	[ "${KSFT_MACHINE_SLOW:-}" = yes ] && pre=16384
	require_memcg
	cg_new LOADER PROBE_ALONE PROBE_ADD
	setup_ns NS
	room_for $((pre + 16))
	f=$(mktemp)
	defer rm -f "$f"
	gen_rules "$f" "$pre" 2
	in_cg "$LOADER" ip netns exec "$NS" "$CG_PORTCTL" -b "$f"

	expect_status 1 in_cg "$PROBE_ALONE" ip netns exec "$NS" "$CG_PORTCTL" add udp 53 dst 10.2.0.0/32 to port 5353
	base=$(cg_read "$PROBE_ALONE" peak)
	in_cg "$PROBE_ADD" ip netns exec "$NS" "$CG_PORTCTL" add $rule to port 5353 > /dev/null
	need=$(cg_read "$PROBE_ADD" peak)
	pc del $rule
	echo "portctl alone peaks at $base bytes, with the add at $need ($pre rules on the port)"
	[ $((need - base)) -ge $((256 * 1024)) ] ||
		fail "the add took only $((need - base)) bytes more than portctl alone: too few to aim memory.max at"

	sum=$(pc list | md5sum)
	c0=$(cg_read "$LOADER" current)
	max=$(((c0 + base + (need - base) / 2) / 4096 * 4096))
	echo "memory.max = $max (memory.current $c0)"
	echo "$max" > "$LOADER/memory.max"
	at_limit err "$LOADER" ip netns exec "$NS" "$CG_PORTCTL" add $rule to port 5353
	echo "portctl add exited $rc; memory.events: $(tr '\n' ' ' < "$LOADER/memory.events")"
	no_oom_kill "$LOADER" "an add beyond memory.max"
	[ "$rc" -ne 0 ] || fail "the add succeeded within memory.max=$max"
	[ "$rc" -eq 1 ] || fail "portctl add exited $rc, expected 1: $err"
	memory_sentence "$err" "the add"
	check_eq "$(printf '%s\n' "$err" | wc -l)" 1 "lines portctl printed"
	check_eq "$(pc list | md5sum)" "$sum" "the table after the refused add"

	echo max > "$LOADER/memory.max"
	in_cg "$LOADER" ip netns exec "$NS" "$CG_PORTCTL" add $rule to port 5353 > /dev/null ||
		fail "the same add failed once memory.max was lifted"
}

# --- rule limits ---

# refused NAMESPACE "SENTENCE (regex)" PORTCTL-ARGS...: refused with the
# sentence (a batch's names its line), and the table unchanged.
refused()
{
	local ns=$1 want=$2 before

	shift 2
	before=$(pcn "$ns" list)
	expect_status 1 pcn "$ns" "$@"
	check_match "$out" "^(Error: |.+:[0-9]+: )$want\\.\$" "portctl $*"
	check_eq "$(pcn "$ns" list)" "$before" "the table after 'portctl $*'"
}

try_batch() { pcn "$1" -b "$2" > /dev/null 2>&1; }

# host_room N: max_rules_total=N, with all N places free. Namespaces that
# earlier tests deleted give their rules back only once their asynchronous
# teardown has run: wait until a namespace can add N rules, then flush it.
host_room()
{
	local probe f

	set_param max_rules_total "$1"
	setup_ns probe
	f=$(mktemp)
	gen_rules "$f" "$1" 9
	busywait 60000 try_batch "$probe" "$f" ||
		fail "a namespace cannot add $1 rules under max_rules_total=$1: the host holds others"
	rm -f "$f"
	pcn "$probe" flush
}

test_host_limit()
{
	local A B f

	require_root
	host_room 5
	setup_ns A B
	pcn "$A" add tcp 1 to port 8080
	pcn "$A" add tcp 2 to port 8080
	pcn "$A" add tcp 3 to port 8080
	pcn "$B" add tcp 1 to port 8080
	pcn "$B" add tcp 2 to port 8080
	refused "$B" "the host is at its limit of 5 rules \\(max_rules_total\\)" add tcp 3 to port 8080
	refused "$A" "the host is at its limit of 5 rules \\(max_rules_total\\)" add tcp 4 to port 8080
	check_eq "$(ns_rules "$A") $(ns_rules "$B")" "3 2" "rules in A and B"

	pcn "$A" del tcp 3
	f=$(mktemp)
	defer rm -f "$f"
	printf 'add tcp 3 to port 8080\nadd tcp 4 to port 8080\n' > "$f"
	refused "$B" "the host is at its limit of 5 rules \\(max_rules_total\\)" -b "$f"
	check_match "$out" "^$f:2: " "the batch's error names its file and line"
	check_eq "$(ns_rules "$A") $(ns_rules "$B")" "2 2" "rules in A and B after the refused batch"
	pcn "$B" add tcp 3 to port 8080
	check_eq "$(ns_rules "$A") $(ns_rules "$B")" "2 3" "rules in A and B"
}

test_ns_limit()
{
	local A B f

	require_root
	set_param max_rules 3
	setup_ns A B
	pcn "$A" add tcp 1 to port 8080
	pcn "$A" add tcp 2 to port 8080
	pcn "$A" add udp 3 to port 8080
	refused "$A" "this namespace's table is full \\(max_rules=3\\)" add tcp 4 to port 8080
	refused "$A" "this namespace's table is full \\(max_rules=3\\)" replace tcp 4 to port 8080
	# Replacing a rule of a full table adds none.
	pcn "$A" replace tcp 1 to port 8081 > /dev/null
	# B's rule and the file's first two adds fill B; a replace in the
	# full table takes no room, the add after it fails, and B's table
	# stays as it was (refused checks it).
	pcn "$B" add udp 9 to port 8080
	f=$(mktemp)
	defer rm -f "$f"
	printf '%s\n' "add tcp 11 to port 8080" "add tcp 12 to port 8080" \
		"replace udp 9 to port 8081" "add tcp 13 to port 8080" > "$f"
	refused "$B" "this namespace's table is full \\(max_rules=3\\)" -b "$f"
	check_match "$out" "^$f:4: " "the batch's error names its file and line"
	check_eq "$(ns_rules "$B")" 1 "rules in B after the refused batch"
	# The limit is the namespace's: B holds as many as A.
	sed -i '$d' "$f"
	pcn "$B" -b "$f"
	check_eq "$(ns_rules "$A") $(ns_rules "$B")" "3 3" "rules in A and B"
}

test_host_total_released()
{
	local n=1000 A B f start

	require_root
	host_room "$n"
	setup_ns A B
	f=$(mktemp)
	defer rm -f "$f"
	gen_rules "$f" "$n" 7
	pcn "$A" -b "$f"
	refused "$B" "the host is at its limit of $n rules \\(max_rules_total\\)" add tcp 1 to port 8080

	start=${EPOCHREALTIME/./}
	ip netns del "$A"
	busywait 60000 try_batch "$B" "$f" ||
		fail "$n rules of a deleted namespace still count against max_rules_total"
	echo "the deleted namespace's $n rules were released within $(((${EPOCHREALTIME/./} - start) / 1000)) ms"
	check_eq "$(ns_rules "$B")" "$n" "rules in B"
}

ktap_plan 6
run_test "loading 65,536 rules charges their memory to the loader's cgroup" test_charged_to_cgroup
run_test "a cgroup at its memory.max gets ENOMEM and the table is unchanged" test_batch_memory_max
run_test "a single add beyond memory.max gets ENOMEM and changes nothing" test_add_memory_max
run_test "max_rules_total limits the rules of all namespaces together" test_host_limit
run_test "max_rules limits each namespace's table" test_ns_limit
run_test "a deleted namespace's rules no longer count against max_rules_total" test_host_total_released
ktap_finish
