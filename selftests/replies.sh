#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# UDP answers leave from the address and port the client asked (issue 12),
# shown with Debian's own programs, unmodified: dig asking dnsmasq, which
# listens on 5353, through `udp 53 -> port 5353`. dig's socket is
# connected to port 53, so an answer from 5353 is dropped and dig times
# out; the module rewrites the source of what the target sends back to a
# steered flow's client, and nothing else (the last tests).
#
#   +-- C ----------------+    +-- S -----------------------------------------+
#   | c-s 198.18.0.2/24   |    | s-c 198.18.0.1/24, 2001:db8::1/64            |
#   |     2001:db8::2/64  |<-->| dnsmasq -u nobody --port 5353: one socket    |
#   | dig @198.18.0.1     |    |   on 0.0.0.0:5353, one on [::]:5353          |
#   | dig @2001:db8::1    |    |   portdispatch.test A 198.18.0.53,           |
#   +---------------------+    |   AAAA 2001:db8::53                          |
#                              | dig @127.0.0.1, @::1                         |
#                              | rule udp 53 -> port 5353, or one rule a      |
#                              |   family -> dnsmasq's own socket (pid fd)    |
#                              | nginx as nobody on 8080, tcp 80 -> 8080      |
#                              +----------------------------------------------+
#
# One dnsmasq serves every test; each test adds its rules and flushes them.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ns_lib.sh"

require_cmd dnsmasq dig nginx curl ss setpriv

A=198.18.0.53
AAAA=2001:db8::53
# How long dig waits for its one answer (+tries=1), in seconds: an answer
# takes a fraction of one, a dropped one costs all of it.
DIG_S=2

# dns_bound: dnsmasq has bound UDP port 5353 for IPv4 and for IPv6; their
# inodes in DNS_INODE4 and DNS_INODE6. Read with bash alone, as it polls.
dns_bound()
{
	local f laddr inode

	DNS_INODE4='' DNS_INODE6=''
	for f in udp udp6; do
		while read -r _ laddr _ _ _ _ _ _ _ inode _; do
			case $laddr in
			00000000:14E9) DNS_INODE4=$inode ;;
			00000000000000000000000000000000:14E9) DNS_INODE6=$inode ;;
			esac
		done < "/proc/$DNS_PID/net/$f"
	done 2>/dev/null
	[ -n "$DNS_INODE4" ] && [ -n "$DNS_INODE6" ]
}

# dns_fds: the file descriptors of those sockets in dnsmasq, DNS_FD4 and
# DNS_FD6.
dns_fds()
{
	local line re=" ([0-9]+) -> socket:\\[([0-9]+)\\]$"

	while IFS= read -r line; do
		[[ $line =~ $re ]] || continue
		case ${BASH_REMATCH[2]} in
		"$DNS_INODE4") DNS_FD4=${BASH_REMATCH[1]} ;;
		"$DNS_INODE6") DNS_FD6=${BASH_REMATCH[1]} ;;
		esac
	done <<< "$(ls -l "/proc/$DNS_PID/fd")"
	if [ -z "${DNS_FD4:-}" ] || [ -z "${DNS_FD6:-}" ]; then
		fail "no fd of dnsmasq is its socket $DNS_INODE4 or $DNS_INODE6: $(ls -l "/proc/$DNS_PID/fd")"
	fi
}

dns_log()
{
	tail -n 5 "$DNS_DIR/log" "$DNS_DIR/out" 2>&1 | tr '\n' ';'
}

# dig_is NS SERVER TYPE ANSWER [DIG-OPTIONS...]: dig in NS asks SERVER
# once for portdispatch.test's TYPE record, and ANSWER is all it gets.
dig_is()
{
	local ns=$1 server=$2 type=$3 want=$4 got

	shift 4
	got=$(ip netns exec "$ns" dig +short +tries=1 +time=$((DIG_S * PD_TIME_SCALE)) \
		"$@" "@$server" portdispatch.test "$type" 2>&1) ||
		fail "dig${*:+ $*} @$server $type, from $ns: $got; dnsmasq: $(dns_log)"
	check_eq "$got" "$want" "dig${*:+ $*} @$server $type, from $ns"
}

# rule_is PORT KEY N [NS]: the rule on PORT (in NS, by default S) counted N.
rule_is()
{
	local n ns=${4:-$S}

	n=$(rule_stat "$1" "$2" "$ns") ||
		fail "portctl -s list shows no $2 for the rule on $1: $(pcn "$ns" -s list)"
	check_eq "$n" "$3" "$2 of the rule on port $1"
}

# ---------------------------------------------- shared by every test

setup_ns S C
veth_link "$S" s-c "$C" c-s
addr "$S" s-c 198.18.0.1/24 2001:db8::1/64
addr "$C" c-s 198.18.0.2/24 2001:db8::2/64

DNS_DIR=$(mktemp -d)
defer rm -rf "$DNS_DIR"
# No configuration file, no upstream, no /etc/hosts: the two records only.
# dnsmasq binds its sockets as root, then runs as nobody.
ip netns exec "$S" dnsmasq --keep-in-foreground -C /dev/null -u nobody -g nogroup \
	--port 5353 --no-resolv --no-hosts \
	--address=/portdispatch.test/$A --address=/portdispatch.test/$AAAA \
	--log-queries --log-facility="$DNS_DIR/log" > "$DNS_DIR/out" 2>&1 &
DNS_PID=$!
defer kill "$DNS_PID"
busywait "$START_MS" dns_bound ||
	fail "dnsmasq did not bind port 5353: $(dns_log)"
dns_fds

# ------------------------------------------------------------- tests

test_port_ipv4()
{
	pcn "$S" add udp 53 to port 5353
	defer pcn "$S" flush
	dig_is "$S" 127.0.0.1 A "$A"
}

test_port_ipv6()
{
	pcn "$S" add udp 53 to port 5353
	defer pcn "$S" flush
	dig_is "$S" ::1 AAAA "$AAAA"
}

# dnsmasq's IPv6 socket is IPV6_V6ONLY: a rule for each family.
test_socket_ipv4()
{
	pcn "$S" -4 add udp 53 to pid "$DNS_PID" fd "$DNS_FD4"
	defer pcn "$S" flush
	dig_is "$S" 127.0.0.1 A "$A"
}

test_socket_ipv6()
{
	pcn "$S" -6 add udp 53 to pid "$DNS_PID" fd "$DNS_FD6"
	defer pcn "$S" flush
	dig_is "$S" ::1 AAAA "$AAAA"
}

# dnsmasq's wildcard sockets answer from the address asked (IP_PKTINFO),
# here the veth's, not loopback.
test_other_namespace()
{
	pcn "$S" add udp 53 to port 5353
	defer pcn "$S" flush
	dig_is "$C" 198.18.0.1 A "$A"
	dig_is "$C" 2001:db8::1 AAAA "$AAAA"
}

# dig -p 5353 is connected to 5353: it takes only an answer from there.
# Between steered queries, the direct ones are neither steered nor
# rewritten. (A client that used one source port for both could not be
# told apart: the module knows a flow by target socket and client.)
test_direct_untouched()
{
	pcn "$S" add udp 53 to port 5353
	defer pcn "$S" flush
	dig_is "$S" 127.0.0.1 A "$A"
	dig_is "$S" 127.0.0.1 A "$A" -p 5353
	dig_is "$S" ::1 AAAA "$AAAA" -p 5353
	dig_is "$S" ::1 AAAA "$AAAA"
	rule_is 53 steered 2
	rule_is 53 replies 2
}

# A server that answers from the original port itself, as a TPROXY server
# does: its target socket on 5353 learns where each query was sent
# (IP_ORIGDSTADDR) and answers through a second socket, bound there. The
# module must leave those answers alone: one each, from port 53, intact.
# Server and client are one program, in a namespace of their own.
PY_OWN_REPLIES='
import os, socket, struct, sys
wait = 2 * int(os.environ.get("PD_TIME_SCALE", "1"))
ORIGDSTADDR = {socket.AF_INET: (socket.IPPROTO_IP, 20),	# IP_ORIGDSTADDR
	       socket.AF_INET6: (socket.IPPROTO_IPV6, 74)}	# IPV6_ORIGDSTADDR
for fam, lo in (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"):
    level, opt = ORIGDSTADDR[fam]
    target = socket.socket(fam, socket.SOCK_DGRAM)
    target.setsockopt(level, opt, 1)
    target.bind((lo, 5353))
    target.settimeout(wait)
    own = socket.socket(fam, socket.SOCK_DGRAM)
    own.bind((lo, 53))
    client = socket.socket(fam, socket.SOCK_DGRAM)
    client.settimeout(wait)
    for q in b"query 1", b"query 2":
        client.sendto(q, (lo, 53))
        data, anc, _, peer = target.recvmsg(64, 64)
        dst = [struct.unpack("!H", d[2:4])[0] for l, t, d in anc if (l, t) == (level, opt)]
        if dst != [53]:
            sys.exit("%s: the target got %r sent to port %s" % (lo, data, dst))
        own.sendto(b"answer to " + data, peer)
        got, src = client.recvfrom(64)
        if got != b"answer to " + q or src[:2] != (lo, 53):
            sys.exit("%s: asked %r, got %r from %s" % (lo, q, got, src[:2]))
    client.setblocking(False)
    try:
        sys.exit("%s: one more datagram: %r" % (lo, client.recvfrom(64)))
    except BlockingIOError:
        pass
    print("%s: two answers from port 53, as sent" % lo)
'

test_own_replies_untouched()
{
	local ns

	setup_ns ns
	pcn "$ns" add udp 53 to port 5353
	ip netns exec "$ns" python3 -c "$PY_OWN_REPLIES"
	rule_is 53 steered 4 "$ns"
	rule_is 53 replies 0 "$ns"
}

# nginx runs as nobody, wholly (no root master): its pid file, logs and
# temporary files live in a directory of its own. A UDP rule beside the
# TCP one, with a flow remembered, puts the reply hooks in nginx's way.
test_tcp_untouched()
{
	local page="portdispatch replies.sh" url got

	nginx_serve "$S" "$page" 8080 '[::]:8080'
	busywait "$START_MS" tcp_listeners 8080 2 ||
		fail "nginx did not listen on 8080: $(cat "$NGINX_DIR/out" "$NGINX_DIR/error.log" 2>&1)"

	pcn "$S" add udp 53 to port 5353
	pcn "$S" add tcp 80 to port 8080
	defer pcn "$S" flush
	dig_is "$S" 127.0.0.1 A "$A"
	for url in http://127.0.0.1/ 'http://[::1]/'; do
		got=$(ip netns exec "$S" curl -sS --max-time $((5 * PD_TIME_SCALE)) "$url" 2>&1) ||
			fail "curl $url: $got"
		check_eq "$got" "$page" "curl $url"
	done
	rule_is 80 steered 2
	# Replies are UDP's: a TCP rule counts none, if it shows the counter.
	got=$(rule_stat 80 replies "$S") || got=0
	check_eq "$got" 0 "replies of the TCP rule"
}

# tcp_listeners PORT N: N sockets listen on PORT in S.
tcp_listeners()
{
	local n=0

	while read -r _; do
		n=$((n + 1))
	done <<< "$(ip netns exec "$S" ss -Htln "sport = :$1")"
	[ "$n" -ge "$2" ]
}

test_replies_counted()
{
	pcn "$S" add udp 53 to port 5353
	defer pcn "$S" flush
	dig_is "$S" 127.0.0.1 A "$A"
	dig_is "$S" ::1 AAAA "$AAAA"
	dig_is "$C" 198.18.0.1 A "$A"
	rule_is 53 steered 3
	rule_is 53 replies 3
}

# nft_count NS RULE-COMMENT: the packets that nft's counter on the rule
# with that comment has seen, in NS.
nft_count()
{
	local re="counter packets ([0-9]+) bytes [0-9]+ comment \"$2\""

	[[ $(ip netns exec "$1" nft list table inet replies) =~ $re ]] &&
		echo "${BASH_REMATCH[1]}"
}

# The rewrite comes before conntrack: conntrack, and every rule that
# matches its states, sees the answer as the reply of the query's flow,
# not as a new flow from port 5353.
test_conntrack_sees_one_flow()
{
	ip netns exec "$S" nft -f - <<-'EOF' || fail "nft could not load its table"
	table inet replies {
		chain out {
			type filter hook output priority 0;
			udp sport 53 ct state established ct direction reply counter comment "reply"
			udp sport 53 ct state new counter comment "new 53"
			udp sport 5353 ct state new counter comment "new 5353"
		}
	}
	EOF
	defer ip netns exec "$S" nft delete table inet replies
	pcn "$S" add udp 53 to port 5353
	defer pcn "$S" flush
	dig_is "$S" 127.0.0.1 A "$A"
	dig_is "$C" 2001:db8::1 AAAA "$AAAA"
	check_eq "$(nft_count "$S" reply)" 2 "answers conntrack saw as replies"
	check_eq "$(nft_count "$S" "new 53")" 0 "answers conntrack saw as new flows from 53"
	check_eq "$(nft_count "$S" "new 5353")" 0 "answers conntrack saw as new flows from 5353"
}

ktap_plan 10
run_test "dig gets dnsmasq's answer through udp 53 -> port 5353, IPv4" test_port_ipv4
run_test "dig gets dnsmasq's answer through udp 53 -> port 5353, IPv6" test_port_ipv6
run_test "dig gets dnsmasq's answer through udp 53 -> dnsmasq's IPv4 socket" test_socket_ipv4
run_test "dig gets dnsmasq's answer through udp 53 -> dnsmasq's IPv6 socket" test_socket_ipv6
run_test "a client in another namespace gets answers, IPv4 and IPv6" test_other_namespace
run_test "queries straight to 5353 are answered from 5353, not steered, not rewritten" test_direct_untouched
run_test "a server that answers from port 53 itself is left alone" test_own_replies_untouched
run_test "TCP is untouched: curl gets nginx's page through tcp 80 -> port 8080" test_tcp_untouched
run_test "the rule counts the answers it sent from port 53" test_replies_counted
run_test "conntrack sees each answer as the reply of its query's flow" test_conntrack_sees_one_flow
ktap_finish
