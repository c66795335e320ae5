#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# shellcheck disable=SC2154 # spawn_server sets VAR_pid, VAR_fd and VAR_out
# portdispatch steers only what the stack delivers to this host, and sees
# each packet as the stack will deliver it: after NAT, after the bridge has
# decided, with the l3mdev (VRF) known. Its hooks sit at LOCAL_IN (input).
#
#  Tests 1-3: DNAT to a remote backend, REDIRECT to a local port
#
#   +-- C -------------+    +-- A --------------------+    +-- B -------------+
#   | c-a 198.18.1.2   |    | a-c 198.18.1.1          |    | b-a 198.18.2.2   |
#   |   2001:db8:1::2  |<-->|     2001:db8:1::1       |    |   2001:db8:2::2  |
#   | client           |    | a-b 198.18.2.1          |<-->| default via A    |
#   +------------------+    |     2001:db8:2::1       |    | backend on :80   |
#                           | forwarding on           |    +------------------+
#                           | dnat 1.1:80 -> 2.2:80   |
#                           | listener :8080          |
#                           | rule tcp 80 -> :8080    |
#                           +-------------------------+
#
#   Test 1: C's connections to 1.1:80 are forwarded to B, rule or not.
#   Tests 2-3: A without B, redirecting :80 to :8080, with listeners on
#   :8080 and :9090 and a rule to :9090 for port 8080 (test 2: it steers)
#   or for port 80 (test 3: it never matches).
#
#  Test 4: a bridge with br_netfilter; H and Y both own 198.18.3.1
#
#   +-- X --------------+    +-- H -------------------+    +-- Y -------------+
#   | x-h 198.18.3.2    |    | br0 198.18.3.1 and .3  |    | y-h 198.18.3.1   |
#   |   2001:db8:3::2   |<-->|   2001:db8:3::1        |<-->|   2001:db8:3::1  |
#   | static neighbours |h-x | bridge-nf-call-ip(6)-  |h-y | udp :9999        |
#   |  3.1, 3::1 -> the |    |  tables=1; udp :5353   |    +------------------+
#   |  MAC of Y         |    | rule udp 9999 -> :5353 |
#   +-------------------+    +------------------------+
#
#   X's datagrams to 3.1:9999 are bridged to Y: H never delivers them, so
#   its rule never sees them. Only the control, to 3.3 (H's alone), is H's.
#
#  Tests 5-7: VRF
#
#   +-- W ---------------+    +-- V ------------------------------------+
#   | w-v 198.18.5.1     |    | vrf-v (table 10)                        |
#   |   2001:db8:5::1    |<-->|   v-w 198.18.5.2, 2001:db8:5::2         |
#   | client             |    | listeners bound to vrf-v: :80 or :8082  |
#   +--------------------+    | unbound listener :8081                  |
#                             +-----------------------------------------+
#
#   An open connection to the vrf-bound :80 keeps its socket when
#   `tcp 80 -> port 8081` is added (early demux on, then off); with
#   `tcp 80 -> port 8082`, a new connection lands on the vrf-bound :8082.
#
#  Test 8: broadcast and multicast
#
#   +-- S ----------------------+    +-- R ---------------------------------+
#   | s-r 198.18.4.1/24 brd +   |    | r-s 198.18.4.2/24 brd +              |
#   |   2001:db8:4::1           |<-->|   2001:db8:4::2                      |
#   | sends to 4.255, to        |    | :7777, IPv4 in group 239.255.77.77,  |
#   |  255.255.255.255, to both |    |  IPv6 in group ff05::77              |
#   |  groups; then one unicast |    | target :5353 (dual stack)            |
#   |  datagram per family to R |    | rule udp 7777 -> :5353               |
#   +---------------------------+    +--------------------------------------+
#
#  Tests 9, 10, 13, 14: the hooks, as `nft list hooks` shows them, in
#  fresh namespaces with no traffic at all: at input, and at output for
#  the replies of UDP flows only while there is a UDP rule.
#
#  Tests 11-12: IPv6 fragments, C -- c-n 2001:db8:6::1 <--> n-c ::2 -- N,
#  MTU 1280 on both ends. IPv6 reassembles after LOCAL_IN: portdispatch
#  reassembles UDP fragments delivered to N itself, while N has a UDP rule
#  for IPv6, and adds no defrag hook for it.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

# How long a namespace keeps its hooks after it last needed them.
LINGER_MS=2000

# nsexec NS CMD...: CMD in namespace NS. (Background servers are started
# with `ip netns exec` itself, so that their pid is the server's.)
nsexec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# accepted SERVER_OUT REGEX [COUNT]: the server reports COUNT (default 1)
# lines matching REGEX, waited for.
accepted()
{
	busywait 5000 has_count "$1" "$2" "${3:-1}" ||
		fail "the server did not report ${3:-1} x /$2/; it said: $(tr '\n' ';' < "$1")"
}

# lines_are FILE REGEX COUNT WHAT: exactly COUNT lines of FILE match.
lines_are()
{
	count_lines "$1" "$2"
	[ "$REPLY" -eq "$3" ] ||
		fail "$4: $REPLY lines match /$2/, expected $3; all: $(tr '\n' ';' < "$1")"
}

# steered_is NS PROTO PORT N: the rule PROTO PORT of NS steered N flows.
steered_is()
{
	local line re="^$2 $3 .* steered ([0-9]+) undeliverable ([0-9]+)( replies [0-9]+)?$" list

	list=$(ip netns exec "$1" "$PORTCTL" -s list) || fail "portctl -s list: $list"
	while IFS= read -r line; do
		if [[ $line =~ $re ]]; then
			[ "${BASH_REMATCH[1]}" -eq "$4" ] ||
				fail "rule $2 $3 steered ${BASH_REMATCH[1]} flows, expected $4: $line"
			return 0
		fi
	done <<< "$list"
	fail "no rule $2 $3 in: $list"
}

# connect_ok NS ADDR PORT [PDSOCK-OPTIONS...]: a TCP connection from NS to
# ADDR:PORT is accepted, and not reset while pdsock waits for the server's
# hello (-w 0 for a server that says nothing).
connect_ok()
{
	local ns=$1 a=$2 p=$3 re="^connected .* peer=\\[?$2\\]?:$3\$"

	shift 3
	expect_status 0 nsexec "$ns" "$PD_BIN/pdsock" connect -w $((2000 * PD_TIME_SCALE)) -a "$a" -p "$p" "$@"
	[[ $out =~ $re ]] || fail "connection from $ns to $a port $p: $out"
}

# ------------------------------------------------------ tests 1-3: NAT

# nat_setup: namespaces C and A (and B with "backend"), as pictured.
nat_setup()
{
	setup_ns C A
	veth_link "$C" c-a "$A" a-c
	addr "$C" c-a 198.18.1.2/24 2001:db8:1::2/64
	addr "$A" a-c 198.18.1.1/24 2001:db8:1::1/64
	# A SYN nobody answers fails in 3 s, not 2 minutes.
	nsexec "$C" sysctl -qw net.ipv4.tcp_syn_retries=1
	[ "${1:-}" = backend ] || return 0

	setup_ns B
	veth_link "$A" a-b "$B" b-a
	addr "$A" a-b 198.18.2.1/24 2001:db8:2::1/64
	addr "$B" b-a 198.18.2.2/24 2001:db8:2::2/64
	ip -n "$B" route add default via 198.18.2.1
	ip -n "$B" -6 route add default via 2001:db8:2::1
	nsexec "$A" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

test_dnat_forwarded()
{
	require_cmd nft
	nat_setup backend
	nsexec "$A" nft -f - <<-'EOF' || skip "nft cannot load a NAT table (nft_nat)"
	table inet pd_dnat {
		chain pre {
			type nat hook prerouting priority dstnat; policy accept;
			ip daddr 198.18.1.1 tcp dport 80 dnat ip to 198.18.2.2:80
			ip6 daddr 2001:db8:1::1 tcp dport 80 dnat ip6 to [2001:db8:2::2]:80
		}
	}
	EOF
	ns_server backend "$B" -6 -p 80
	ns_server local "$A" -6 -p 8080

	connect_ok "$C" 198.18.1.1 80
	connect_ok "$C" 2001:db8:1::1 80 -6
	accepted "$backend_out" '^accept local=\[::ffff:198\.18\.2\.2\]:80 peer=\[::ffff:198\.18\.1\.2\]:'
	accepted "$backend_out" '^accept local=\[2001:db8:2::2\]:80 peer=\[2001:db8:1::2\]:'

	# A rule for the port the client used: the flow is forwarded, it
	# is not A's to steer.
	nsexec "$A" "$PORTCTL" add tcp 80 to port 8080
	connect_ok "$C" 198.18.1.1 80
	connect_ok "$C" 2001:db8:1::1 80 -6
	accepted "$backend_out" '^accept local=\[::ffff:198\.18\.2\.2\]:80 ' 2
	accepted "$backend_out" '^accept local=\[2001:db8:2::2\]:80 ' 2
	lines_are "$backend_out" '^accept ' 4 "connections the backend in B accepted"
	lines_are "$local_out" '^accept ' 0 "connections A's own listener on 8080 accepted"
	steered_is "$A" tcp 80 0
}

# redirect_setup: C and A, A redirecting TCP port 80 to 8080 and
# listening on 8080 and 9090.
redirect_setup()
{
	require_cmd nft
	nat_setup
	nsexec "$A" nft -f - <<-'EOF' || skip "nft cannot load a NAT table (nft_redir)"
	table inet pd_redirect {
		chain pre {
			type nat hook prerouting priority dstnat; policy accept;
			tcp dport 80 redirect to :8080
		}
	}
	EOF
	ns_server normal "$A" -6 -p 8080
	ns_server target "$A" -6 -p 9090
}

test_redirect_post_nat_port_steers()
{
	redirect_setup
	nsexec "$A" "$PORTCTL" add tcp 8080 to port 9090

	connect_ok "$C" 198.18.1.1 80
	connect_ok "$C" 2001:db8:1::1 80 -6
	# The socket sees the address REDIRECT made: port 8080.
	accepted "$target_out" '^accept local=\[::ffff:198\.18\.1\.1\]:8080 peer=\[::ffff:198\.18\.1\.2\]:'
	accepted "$target_out" '^accept local=\[2001:db8:1::1\]:8080 peer=\[2001:db8:1::2\]:'
	lines_are "$target_out" '^accept ' 2 "connections the 9090 listener (the target) accepted"
	lines_are "$normal_out" '^accept ' 0 "connections the 8080 listener accepted"
	steered_is "$A" tcp 8080 2
}

test_redirect_pre_nat_port_ignored()
{
	redirect_setup
	nsexec "$A" "$PORTCTL" add tcp 80 to port 9090

	connect_ok "$C" 198.18.1.1 80
	connect_ok "$C" 2001:db8:1::1 80 -6
	accepted "$normal_out" '^accept local=\[::ffff:198\.18\.1\.1\]:8080 peer=\[::ffff:198\.18\.1\.2\]:'
	accepted "$normal_out" '^accept local=\[2001:db8:1::1\]:8080 peer=\[2001:db8:1::2\]:'
	lines_are "$normal_out" '^accept ' 2 "connections the 8080 listener accepted"
	lines_are "$target_out" '^accept ' 0 "connections the 9090 listener (the rule's target) accepted"
	steered_is "$A" tcp 80 0
}

# ------------------------------------------------------ test 4: bridge

test_bridged_untouched()
{
	local i ymac=02:00:00:00:03:02

	modprobe -q br_netfilter 2>/dev/null || true
	[ -d /proc/sys/net/bridge ] || skip "needs br_netfilter (CONFIG_BRIDGE_NETFILTER)"
	setup_ns X H Y
	ip link add h-x netns "$H" type veth peer name x-h netns "$X"
	ip link add h-y netns "$H" type veth peer name y-h netns "$Y" address "$ymac"
	ip -n "$H" link add br0 type bridge
	ip -n "$H" link set h-x master br0 up
	ip -n "$H" link set h-y master br0 up
	ip -n "$H" link set br0 up
	ip -n "$X" link set x-h up
	ip -n "$Y" link set y-h up
	nsexec "$H" sysctl -qw net.bridge.bridge-nf-call-iptables=1 \
		net.bridge.bridge-nf-call-ip6tables=1 ||
		skip "bridge-nf-call-iptables cannot be set in a namespace"
	addr "$H" br0 198.18.3.1/24 198.18.3.3/24 2001:db8:3::1/64
	addr "$X" x-h 198.18.3.2/24 2001:db8:3::2/64
	addr "$Y" y-h 198.18.3.1/24 2001:db8:3::1/64
	ip -n "$X" neigh replace 198.18.3.1 lladdr "$ymac" dev x-h nud permanent
	ip -n "$X" -6 neigh replace 2001:db8:3::1 lladdr "$ymac" dev x-h nud permanent

	ns_server real "$Y" -6 -u -p 9999
	ns_server steal "$H" -6 -u -p 5353
	nsexec "$H" "$PORTCTL" add udp 9999 to port 5353

	for i in 1 2 3; do
		nsexec "$X" "$PD_BIN/pdsock" connect -u -a 198.18.3.1 -p 9999 -w 0 > /dev/null
		nsexec "$X" "$PD_BIN/pdsock" connect -6 -u -a 2001:db8:3::1 -p 9999 -w 0 > /dev/null
	done
	# The control: to 3.3, which only H owns, H's rule does steer.
	nsexec "$X" "$PD_BIN/pdsock" connect -u -a 198.18.3.3 -p 9999 -w 0 > /dev/null
	accepted "$steal_out" '^recv local=198\.18\.3\.3:9999 peer=\[::ffff:198\.18\.3\.2\]:'

	accepted "$real_out" '^recv local=198\.18\.3\.1:9999 peer=\[::ffff:198\.18\.3\.2\]:' 3
	accepted "$real_out" '^recv local=\[2001:db8:3::1\]:9999 peer=\[2001:db8:3::2\]:' 3
	lines_are "$real_out" '^recv ' 6 "datagrams Y (the bridged-to host) got"
	lines_are "$steal_out" '^recv ' 1 "datagrams H's 5353 socket got (the control alone)"
	steered_is "$H" udp 9999 1
}

# ------------------------------------------------------ tests 5-7: VRF

vrf_setup()
{
	require_cmd python3
	modprobe -q vrf 2>/dev/null || true
	setup_ns W V
	veth_link "$W" w-v "$V" v-w
	ip -n "$V" link add vrf-v type vrf table 10 ||
		skip "cannot create a VRF device (CONFIG_NET_VRF)"
	ip -n "$V" link set vrf-v up
	ip -n "$V" link set v-w master vrf-v
	# Addresses after the enslavement, which may cycle the device.
	addr "$V" v-w 198.18.5.2/24 2001:db8:5::2/64
	addr "$W" w-v 198.18.5.1/24 2001:db8:5::1/64
	nsexec "$W" sysctl -qw net.ipv4.tcp_syn_retries=1
}

# test_vrf_established on|off: early demux on or off in V.
test_vrf_established()
{
	vrf_setup
	if [ "$1" = off ]; then
		nsexec "$V" sysctl -qw net.ipv4.ip_early_demux=0 \
			net.ipv4.tcp_early_demux=0 net.ipv4.udp_early_demux=0
	fi
	spawn_server vrf80 ip netns exec "$V" python3 -c "$PY_ECHO_SERVER" -6 -d vrf-v 80
	ns_server other "$V" -6 -p 8081
	spawn_chatter conns 2 ip netns exec "$W" python3 -c "$PY_CHATTER" \
		198.18.5.2 80 2001:db8:5::2 80
	accepted "$vrf80_out" '^accept local=\[::ffff:198\.18\.5\.2\]:80 peer=\[::ffff:198\.18\.5\.1\]:'
	accepted "$vrf80_out" '^accept local=\[2001:db8:5::2\]:80 peer=\[2001:db8:5::1\]:'

	nsexec "$V" "$PORTCTL" add tcp 80 to port 8081
	# Both connections go on talking, to the vrf-bound socket they had.
	chatter_alive "$conns_out" 5
	lines_are "$vrf80_out" '^accept ' 2 "connections the vrf-bound listener on 80 accepted"
	lines_are "$other_out" '^accept ' 0 "connections the unbound 8081 listener accepted"
	steered_is "$V" tcp 80 0
}

test_vrf_target()
{
	vrf_setup
	spawn_server vrf ip netns exec "$V" python3 -c "$PY_ECHO_SERVER" -6 -d vrf-v 8082
	nsexec "$V" "$PORTCTL" add tcp 80 to port 8082

	connect_ok "$W" 198.18.5.2 80 -w 0
	connect_ok "$W" 2001:db8:5::2 80 -6 -w 0
	accepted "$vrf_out" '^accept local=\[::ffff:198\.18\.5\.2\]:80 peer=\[::ffff:198\.18\.5\.1\]:'
	accepted "$vrf_out" '^accept local=\[2001:db8:5::2\]:80 peer=\[2001:db8:5::1\]:'
	lines_are "$vrf_out" '^accept ' 2 "connections the vrf-bound 8082 listener accepted"
	steered_is "$V" tcp 80 2
}

# ------------------------------------------------------ test 8: bcast, mcast

GROUP4=239.255.77.77
GROUP6=ff05::77

# Receives on UDP PORT with an IPv4 socket (0.0.0.0, a member of GROUP4 on
# DEV) and an IPv6 one ([::], IPv6 only, a member of GROUP6 on DEV).
# Prints "ready pid=PID fd=FD", then "recv v4|v6 PAYLOAD" per datagram.
# Run it as: python3 -c "$PY_GROUP_RECV" DEV PORT GROUP4 GROUP6
PY_GROUP_RECV='
import os, selectors, socket, struct, sys
dev, port, g4, g6 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
idx = socket.if_nametoindex(dev)
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.bind(("0.0.0.0", port))
s4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
              socket.inet_aton(g4) + socket.inet_aton("0.0.0.0") +
              struct.pack("@i", idx))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s6.bind(("::", port))
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
              socket.inet_pton(socket.AF_INET6, g6) + struct.pack("@I", idx))
sel = selectors.DefaultSelector()
sel.register(s4, selectors.EVENT_READ, "v4")
sel.register(s6, selectors.EVENT_READ, "v6")
print("ready pid=%d fd=%d" % (os.getpid(), s4.fileno()), flush=True)
while True:
    for key, _ in sel.select():
        data = key.fileobj.recv(2048)
        print("recv %s %s" % (key.data, data.decode()), flush=True)
'

# Sends N rounds of one datagram to each of: the subnet broadcast, the
# limited broadcast, GROUP4 and GROUP6, all out of DEV; then one unicast
# datagram to each of UCAST4 and UCAST6. The payload is "KIND ROUND".
# Run it as: python3 -c "$PY_GROUP_SEND" DEV PORT N BCAST GROUP4 GROUP6 UCAST4 UCAST6
PY_GROUP_SEND='
import socket, sys
dev, port, n, bcast, g4, g6, u4, u6 = sys.argv[1:]
port, n = int(port), int(n)
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s4.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
              socket.if_nametoindex(dev))
for i in range(n):
    s4.sendto(b"bcast %d" % i, (bcast, port))
    s4.sendto(b"lbcast %d" % i, ("255.255.255.255", port))
    s4.sendto(b"mcast4 %d" % i, (g4, port))
    s6.sendto(b"mcast6 %d" % i, (g6, port))
s4.sendto(b"ucast4 0", (u4, port))
s6.sendto(b"ucast6 0", (u6, port))
'

test_bcast_mcast_untouched()
{
	local n=3

	require_cmd python3
	setup_ns S R
	veth_link "$S" s-r "$R" r-s
	ip -n "$S" addr add 198.18.4.1/24 brd + dev s-r
	ip -n "$R" addr add 198.18.4.2/24 brd + dev r-s
	addr "$S" s-r 2001:db8:4::1/64
	addr "$R" r-s 2001:db8:4::2/64

	spawn_server group ip netns exec "$R" python3 -c "$PY_GROUP_RECV" r-s 7777 "$GROUP4" "$GROUP6"
	ns_server target "$R" -6 -u -p 5353
	nsexec "$R" "$PORTCTL" add udp 7777 to port 5353

	nsexec "$S" python3 -c "$PY_GROUP_SEND" s-r 7777 "$n" 198.18.4.255 \
		"$GROUP4" "$GROUP6" 198.18.4.2 2001:db8:4::2
	# The unicast datagrams, sent last, are steered: the rule works.
	accepted "$target_out" '^recv local=198\.18\.4\.2:7777 peer=\[::ffff:198\.18\.4\.1\]:'
	accepted "$target_out" '^recv local=\[2001:db8:4::2\]:7777 peer=\[2001:db8:4::1\]:'
	# Everything else reached the sockets that asked for it.
	accepted "$group_out" '^recv v4 bcast ' "$n"
	accepted "$group_out" '^recv v4 lbcast ' "$n"
	accepted "$group_out" '^recv v4 mcast4 ' "$n"
	accepted "$group_out" '^recv v6 mcast6 ' "$n"
	lines_are "$group_out" '^recv ' $((4 * n)) "datagrams the :7777 sockets got"
	lines_are "$target_out" '^recv ' 2 "datagrams the rule's target got (the unicast ones alone)"
	steered_is "$R" udp 7777 2
}

# ------------------------------------------------------ tests 9-12: hooks

# The hooks are read from one `nft -i` per test, started in the namespace
# beforehand: starting nft takes longer than the linger on the debug
# kernel (and up to a second on the others, with guests beside them).

# How long nft -i may take to answer, in seconds.
NFT_WAIT=$((20 * PD_TIME_SCALE))

# nft_start NS: the interactive nft in NS, as coprocess NFT. The namespace
# gets an nft table, pd_end, with one base chain (a hook of nf_tables at
# ip input, priority 0): its listing ends each answer, and its hook shows
# that `nft list hooks` lists hooks at all (on a kernel without
# nfnetlink_hook, it prints nothing and exits 0, after seconds).
nft_start()
{
	require_cmd nft stdbuf
	modprobe -q nfnetlink_hook 2>/dev/null ||
		skip "this kernel has no nfnetlink_hook (CONFIG_NETFILTER_NETLINK_HOOK): nft list hooks shows nothing"
	coproc NFT { exec ip netns exec "$1" stdbuf -oL nft -i 2>&1; }
	defer kill "$NFT_PID"
	echo "add table ip pd_end" >&"${NFT[1]}"
	echo "add chain ip pd_end probe { type filter hook input priority 0; policy accept; }" >&"${NFT[1]}"
	hooks_now
	expect_hook '^ip input [-+]?0+ chain ip pd_end probe( |$)' "nft list hooks, with an nf_tables chain at input"
}

# nft_ask: ask the nft -i of coprocess NFT to list the hooks; its answer
# in $HOOKS_RAW. Returns 1 if nft did not answer in time, 2 if it said
# "Error:". It calls nothing else: the add/del loop test runs it in a
# shell of its own.
nft_ask()
{
	local line err=0

	echo "list hooks" >&"${NFT[1]}"
	echo "list table ip pd_end" >&"${NFT[1]}"
	HOOKS_RAW=
	while IFS= read -r -t "$NFT_WAIT" line <&"${NFT[0]}"; do
		if [ "$line" = "table ip pd_end {" ]; then
			# The rest of the table, up to its closing brace.
			while [ "$line" != "}" ]; do
				IFS= read -r -t "$NFT_WAIT" line <&"${NFT[0]}" || return 1
			done
			return "$err"
		fi
		[[ $line == Error:* ]] && err=2
		HOOKS_RAW+=$line$'\n'
	done
	return 1
}

# hooks_now: the netfilter hooks registered in the namespace of NFT, one
# "FAMILY HOOK PRIORITY FUNCTION [MODULE]" line each (nft prints a
# priority with its sign, a space for 0), in $HOOKS; nft's own text in
# $HOOKS_RAW.
hooks_now()
{
	local rc=0

	nft_ask || rc=$?
	[ "$rc" -ne 1 ] || fail "nft -i stopped answering; it said: $HOOKS_RAW"
	[ "$rc" -eq 0 ] || fail "nft list hooks: $HOOKS_RAW"
	parse_hooks
}

# parse_hooks: $HOOKS from $HOOKS_RAW.
parse_hooks()
{
	local line fam='' hook=''

	HOOKS=
	while IFS= read -r line; do
		if [[ $line =~ ^family\ ([a-z0-9]+) ]]; then
			fam=${BASH_REMATCH[1]}
		elif [[ $line =~ ^[[:space:]]+hook\ ([a-z_]+) ]]; then
			hook=${BASH_REMATCH[1]}
		elif [[ $line =~ ^[[:space:]]+([-+]?[0-9]+)\ (.*)$ ]]; then
			HOOKS+="$fam $hook ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"$'\n'
		fi
	done <<< "$HOOKS_RAW"
}

# has_hook REGEX: a line of $HOOKS matches REGEX.
has_hook()
{
	local line

	while IFS= read -r line; do
		[[ $line =~ $1 ]] && return 0
	done <<< "$HOOKS"
	return 1
}

PD_V4='^ip input [-+]?[0-9]+ pd_hook_ipv4 \[portdispatch\]$'
PD_V6='^ip6 input [-+]?[0-9]+ pd_hook_ipv6 \[portdispatch\]$'
PD_OUT_V4='^ip output [-+]?[0-9]+ pd_reply_hook_ipv4 \[portdispatch\]$'
PD_OUT_V6='^ip6 output [-+]?[0-9]+ pd_reply_hook_ipv6 \[portdispatch\]$'
PD_ANY='\[portdispatch\]'
DEFRAG_V4=' ipv4_conntrack_defrag( |$)'
DEFRAG_V6=' ipv6_defrag( |$)'

expect_hook()
{
	has_hook "$1" || fail "$2: no hook matches /$1/ in: $HOOKS_RAW"
}

expect_no_hook()
{
	! has_hook "$1" || fail "$2: a hook matches /$1/ in: $HOOKS_RAW"
}

# ours_present WHAT [replies]: both of portdispatch's hooks at input,
# after the firewall and input SNAT (NF_IP_PRI_NAT_SRC, 100); with
# "replies" (a UDP rule) also both reply hooks at output, before
# conntrack (NF_IP_PRI_CONNTRACK, -200); and none elsewhere.
ours_present()
{
	local line n=0 want=2 in='^ip6? input \+0*([0-9]+) '
	local out='^ip6? output -0*([0-9]+) pd_reply_hook_ipv[46] '

	expect_hook "$PD_V4" "$1"
	expect_hook "$PD_V6" "$1"
	if [ "${2:-}" = replies ]; then
		want=4
		expect_hook "$PD_OUT_V4" "$1"
		expect_hook "$PD_OUT_V6" "$1"
	fi
	while IFS= read -r line; do
		[[ $line =~ $PD_ANY ]] || continue
		n=$((n + 1))
		if [[ $line =~ $in ]] && [ "${BASH_REMATCH[1]}" -gt 100 ]; then
			continue
		fi
		if [ $want -eq 4 ] && [[ $line =~ $out ]] &&
		   [ "${BASH_REMATCH[1]}" -gt 200 ]; then
			continue
		fi
		fail "$1: a portdispatch hook neither at input after priority 100 nor, for replies, at output before conntrack: $line"
	done <<< "$HOOKS"
	check_eq "$n" $want "$1: portdispatch hooks"
}

_ours_gone()
{
	hooks_now
	! has_hook "$PD_ANY"
}

test_hooks_first_rule()
{
	setup_ns N
	nft_start "$N"
	expect_no_hook "$PD_ANY" "a namespace that never had a rule"

	nsexec "$N" "$PORTCTL" add tcp 80 to port 8080
	hooks_now
	ours_present "after the first rule (tcp 80)"
	expect_no_hook "$DEFRAG_V4" "with a TCP rule"
	expect_no_hook "$DEFRAG_V6" "with a TCP rule"
}

test_hooks_no_defrag()
{
	setup_ns N
	nft_start "$N"
	nsexec "$N" "$PORTCTL" add tcp 80 to port 8080
	nsexec "$N" "$PORTCTL" add udp 53 to port 5353
	hooks_now
	ours_present "with rules tcp 80 and udp 53" replies
	expect_no_hook "$DEFRAG_V6" "with a UDP rule for both families"
	expect_no_hook "$DEFRAG_V4" "with a UDP rule for both families"
}

# A datagram of 3000 bytes, fragmented by C's 1280-byte MTU, from C to
# [2001:db8:6::2]:53 in N.
frag_setup()
{
	setup_ns C N
	veth_link "$C" c-n "$N" n-c
	ip -n "$C" link set c-n mtu 1280
	ip -n "$N" link set n-c mtu 1280
	addr "$C" c-n 2001:db8:6::1/64
	addr "$N" n-c 2001:db8:6::2/64
}

send_fragmented()
{
	expect_status 0 nsexec "$C" "$PD_BIN/pdsock" connect -6 -u -w 0 \
		-a 2001:db8:6::2 -p 53 -s 3000
}

test_ipv6_fragments_steered()
{
	frag_setup
	ns_server target "$N" -6 -u -p 5353
	nsexec "$N" "$PORTCTL" add udp 53 to port 5353
	send_fragmented
	accepted "$target_out" '^recv local=\[2001:db8:6::2\]:53 peer=\[2001:db8:6::1\]:[0-9]+ len=3000$'
	steered_is "$N" udp 53 1
}

test_ipv6_fragments_untouched()
{
	frag_setup
	ns_server plain "$N" -6 -u -p 53
	ns_server target "$N" -6 -u -p 5353
	nsexec "$N" "$PORTCTL" -4 add udp 53 to port 5353
	nsexec "$N" "$PORTCTL" add tcp 53 to port 5353
	send_fragmented
	accepted "$plain_out" '^recv local=\[2001:db8:6::2\]:53 peer=\[2001:db8:6::1\]:[0-9]+ len=3000$'
	lines_are "$target_out" '^recv ' 0 "datagrams the rules' target got"
}

test_hooks_linger()
{
	local t0 t1 t2 gone

	setup_ns N
	nft_start "$N"
	nsexec "$N" "$PORTCTL" add tcp 80 to port 8080
	nsexec "$N" "$PORTCTL" add udp 53 to port 5353

	t0=${EPOCHREALTIME/./}
	nsexec "$N" "$PORTCTL" flush
	t1=${EPOCHREALTIME/./}
	hooks_now
	t2=${EPOCHREALTIME/./}
	ours_present "$(((t2 - t1) / 1000)) ms after flush" replies

	busywait $((LINGER_MS + 3000)) _ours_gone ||
		fail "hooks still there $(((${EPOCHREALTIME/./} - t1) / 1000)) ms after flush: $HOOKS_RAW"
	gone=$(((${EPOCHREALTIME/./} - t0) / 1000))
	echo "hooks gone ${gone} ms after the flush began"
	[ "$gone" -ge $((LINGER_MS / 2)) ] ||
		fail "hooks gone ${gone} ms after the flush began: no linger of about $LINGER_MS ms"
}

test_hooks_add_del_loop()
{
	local i dir rounds=20

	setup_ns N
	nft_start "$N"
	new_file
	dir=$REPLY
	mkdir "$dir"
	# The loop runs in one shell in N, with an nft -i of its own, and
	# keeps each sample (taken after del, when N has no rule) in a file:
	# `ip netns exec` per command would double its time on the debug
	# kernel.
	# shellcheck disable=SC2016
	NFT_WAIT=$NFT_WAIT ip netns exec "$N" bash -c "$(declare -f nft_ask)"'
		coproc NFT { exec stdbuf -oL nft -i 2>&1; }
		for ((i = 1; i <= $2; i++)); do
			"$0" add tcp 80 to port 8080 || exit 1
			"$0" del tcp 80 || exit 1
			nft_ask || { echo "nft -i: $HOOKS_RAW"; exit 1; }
			printf %s "$HOOKS_RAW" > "$1/$i"
		done
		kill "$NFT_PID"' "$PORTCTL" "$dir" "$rounds" || fail "the add/del loop failed"

	for ((i = 1; i <= rounds; i++)); do
		IFS= read -r -d '' HOOKS_RAW < "$dir/$i" || true
		parse_hooks
		ours_present "after del in round $i"
	done
}

ktap_plan 14
run_test "DNAT to a remote backend: a rule for the original port never touches the forwarded flow" test_dnat_forwarded
run_test "REDIRECT 80 to 8080: a rule for 8080, the port after NAT, steers the connection" test_redirect_post_nat_port_steers
run_test "REDIRECT 80 to 8080: a rule for 80, the port before NAT, does not catch it" test_redirect_pre_nat_port_ignored
run_test "br_netfilter: frames bridged to another port never meet the bridge host's rule" test_bridged_untouched
run_test "VRF: an open connection to a vrf-bound listener keeps it when a rule covers its port (early demux on)" test_vrf_established on
run_test "VRF: an open connection to a vrf-bound listener keeps it when a rule covers its port (early demux off)" test_vrf_established off
run_test "VRF: a vrf-bound listener is a rule's target; getsockname says the original port" test_vrf_target
run_test "broadcast and multicast go to the sockets that asked, never to a rule's target" test_bcast_mcast_untouched
run_test "hooks: none before the first rule, then at input for ip and ip6, without defrag or reply hooks for TCP" test_hooks_first_rule
run_test "hooks: a UDP rule for both families adds the reply hooks at output and no defrag hook" test_hooks_no_defrag
run_test "IPv6: a fragmented UDP datagram from another host is steered whole" test_ipv6_fragments_steered
run_test "IPv6: without a UDP rule for IPv6, fragments are the stack's to reassemble" test_ipv6_fragments_untouched
run_test "hooks: after flush they stay for the linger of about 2 s, then go" test_hooks_linger
run_test "hooks: an add/del loop of 20 rounds keeps them registered throughout" test_hooks_add_del_loop
ktap_finish
