// SPDX-License-Identifier: GPL-2.0
/*
 * The packet path: a LOCAL_IN hook per family (attach.c registers them).
 * There the stack has decided to deliver the packet here: NAT has run, so
 * the address and port after NAT decide, as they do for the stack's own
 * lookup; a VRF has claimed it; IPv4 is reassembled (IPv6 by netfilter,
 * see attach.h); frames that a bridge forwards elsewhere never come; and
 * the route tells broadcast and multicast apart.
 *
 * For each TCP or UDP packet of a namespace that has rules:
 *  1. a packet that has a socket keeps it: early demux gives one to most
 *     packets of established, handshaking, TIME_WAIT and connected UDP
 *     flows, and TPROXY or bpf_sk_assign may have chosen one;
 *  2. the table: no rule covers the port, nothing else happens;
 *  3. a flow that has a socket all the same keeps it (early demux does
 *     not run on loopback, nor when it is switched off), and the packet
 *     carries it on, as early demux would have; except a SYN that TCP
 *     would let reopen a TIME_WAIT connection: that is a new flow;
 *  4. the rule's target takes the new flow if it can (of a group, the
 *     member the flow hashes to, or the next in its order: group.h); if
 *     none can, the stack's normal lookup answers, as without the rule. A UDP
 *     flow is remembered, so that its replies leave from the port the
 *     client used (reply.h).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netfilter.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <net/inet_timewait_sock.h>
#include <net/ip.h>
#include <net/ipv6.h>
#include <net/ipv6_frag.h>
#include <net/route.h>
#include <net/sock.h>
#include <net/tcp_states.h>
#include <net/netfilter/ipv6/nf_defrag_ipv6.h>
#include <net/udp.h>

#include "compat.h"
#include "group.h"
#include "hook.h"
#include "lookup.h"
#include "packet.h"
#include "pernet.h"
#include "reaper.h"
#include "reply.h"
#include "table.h"
#include "timewait.h"

/* The table's index for an IP protocol, or -1 for one it has no rules for. */
static inline int pd_proto(int protocol)
{
	if (protocol == IPPROTO_TCP)
		return PD_TCP;
	if (protocol == IPPROTO_UDP)
		return PD_UDP;
	return -1;
}

/* What the decisions after the table need of a TCP header. */
static inline bool pd_parse_tcp(struct sk_buff *skb, struct pd_packet *pkt)
{
	const struct tcphdr *th;
	struct tcphdr _th;

	th = skb_header_pointer(skb, pkt->thoff, sizeof(_th), &_th);
	/* TCP drops a header shorter than its fixed part. */
	if (!th || th->doff < sizeof(*th) / 4)
		return false;
	pkt->tcp_syn_only = th->syn && !th->ack && !th->rst && !th->fin;
	pkt->thlen = __tcp_hdrlen(th);
	return true;
}

/* The rest of the flow's identity, for a packet that a rule covers. */
static void pd_parse_flow(const struct sk_buff *skb, struct pd_packet *pkt)
{
	if (pkt->family == AF_INET) {
		pkt->saddr.v4 = ip_hdr(skb)->saddr;
		pkt->daddr.v4 = ip_hdr(skb)->daddr;
		pkt->dif = inet_iif(skb);
		pkt->sdif = inet_sdif(skb);
	} else {
		pkt->saddr.v6 = ipv6_hdr(skb)->saddr;
		pkt->daddr.v6 = ipv6_hdr(skb)->daddr;
		pkt->dif = inet6_iif(skb);
		pkt->sdif = inet6_sdif(skb);
	}
}

/* Broadcast and multicast go to every socket that asked for them. */
static bool pd_unicast(const struct sk_buff *skb, const struct pd_packet *pkt)
{
	if (pkt->family == AF_INET)
		return !(skb_rtable(skb)->rt_flags &
			 (RTCF_BROADCAST | RTCF_MULTICAST));
	return !ipv6_addr_is_multicast(&pkt->daddr.v6);
}

/*
 * The TCP socket the flow already has: the one early demux gave the packet
 * (only a TIME_WAIT socket gets this far), or else what the stack's own
 * lookup finds, which the packet then carries, as early demux would have
 * left it, so that TCP does not look it up a second time.
 */
static struct sock *pd_tcp_flow(struct net *net, struct sk_buff *skb,
				const struct pd_packet *pkt)
{
	struct sock *sk = skb->sk;

	if (!sk) {
		sk = pd_lookup_established(net, pkt);
		if (sk) {
			skb->sk = sk;
			skb->destructor = sock_edemux;
		}
	}
	return sk;
}

/*
 * The connected socket that owns the datagram, if one does. Every socket
 * bound to a port is in that port's slot of UDP's first table, so an empty
 * slot answers for the price of an addition: the usual case on a port
 * that a rule moves elsewhere.
 */
static struct sock *pd_udp_flow(struct net *net, const struct pd_packet *pkt)
{
	struct udp_table *udptable = pd_udp_table(net);
	struct sock *sk;

	if (!READ_ONCE(udp_hashslot(udptable, net, ntohs(pkt->dport))->count))
		return NULL;

	sk = pd_lookup_udp(net, NULL, pkt, pkt->dport);
	if (sk && READ_ONCE(sk->sk_state) == TCP_ESTABLISHED)
		return sk;
	return NULL;
}

/*
 * The socket for a new flow, or NULL when the target cannot take it now.
 * Under rcu_read_lock(); the socket is not referenced: a socket target is
 * held by its rule, and the stack's own listeners and UDP sockets are
 * freed after a grace period. @skb->data is at the transport header.
 */
static struct sock *pd_target_pick(struct net *net, struct sk_buff *skb,
				   const struct pd_packet *pkt,
				   const struct pd_target *target)
{
	struct sock *sk = target->sk;

	if (target->kind == PD_TARGET_PORT) {
		if (pkt->proto == PD_TCP)
			return pd_lookup_listener(net, skb, pkt,
						  htons(target->port));
		return pd_lookup_udp(net, skb, pkt, htons(target->port));
	}

	if (pkt->proto == PD_TCP)
		return READ_ONCE(sk->sk_state) == TCP_LISTEN ? sk : NULL;
	return pd_udp_ready(sk) ? sk : NULL;
}

/*
 * A TCP segment that no socket owns goes to the target too, the SYN that
 * opens a connection and any other: the ACK that completes a handshake
 * answered with a SYN cookie has only the listener to go to, and the
 * target's is the one that sent the cookie. But only a SYN is a new flow,
 * which the rule's counters count: a segment that outlived its
 * connection (a retransmission answered after the close, a reset, a
 * scanner's ACK) is handed over as the stack would hand it to a
 * listener, and counted only as the packet it is (hits).
 */
static inline bool pd_new_flow(const struct pd_packet *pkt)
{
	return pkt->proto == PD_UDP || pkt->tcp_syn_only;
}

/* A target that could not take a flow: if its socket closed, the reaper acts. */
static void pd_target_failed(const struct pd_datapath *dp,
			     const struct pd_target *target)
{
	if (pd_target_closed(target))
		pd_reaper_kick(dp->pn);
}

/* A member that was a flow's first choice and could not take it. */
static void pd_member_passed_over(const struct pd_datapath *dp,
				  const struct pd_packet *pkt,
				  const struct pd_member *m)
{
	if (pd_new_flow(pkt))
		pd_count(m->counters, PD_COUNT_UNDELIVERABLE);
	pd_target_failed(dp, &m->target);
}

/* The rest of the slot's order, when its own member could not take the flow. */
static noinline struct sock *pd_group_pick_next(const struct pd_datapath *dp,
						struct net *net,
						struct sk_buff *skb,
						const struct pd_packet *pkt,
						const struct pd_group *g,
						unsigned int slot,
						const struct pd_member **mp)
{
	u8 order[PD_GROUP_MAX];
	unsigned int i, n;
	struct sock *sk;

	pd_member_passed_over(dp, pkt, *mp);
	n = pd_group_order(g, slot, order);
	for (i = 1; i < n; i++) {
		*mp = &g->member[order[i]];
		sk = pd_target_pick(net, skb, pkt, &(*mp)->target);
		if (sk)
			return sk;
		pd_target_failed(dp, &(*mp)->target);
	}
	*mp = NULL;
	return NULL;
}

/*
 * The socket for a new flow of @rule, and of a group the member that
 * takes it (*@mp); NULL when no target can take it now.
 */
static inline struct sock *pd_rule_pick(const struct pd_datapath *dp,
					struct net *net, struct sk_buff *skb,
					const struct pd_packet *pkt,
					const struct pd_rule *rule,
					const struct pd_member **mp)
{
	const struct pd_group *g = rule->target.group;
	unsigned int slot;
	struct sock *sk;

	if (likely(rule->target.kind != PD_TARGET_GROUP)) {
		sk = pd_target_pick(net, skb, pkt, &rule->target);
		if (!sk)
			pd_target_failed(dp, &rule->target);
		return sk;
	}
	slot = pd_group_slot(g, pkt);
	*mp = &g->member[g->slot[slot]];
	sk = pd_target_pick(net, skb, pkt, &(*mp)->target);
	if (likely(sk))
		return sk;
	return pd_group_pick_next(dp, net, skb, pkt, g, slot, mp);
}

/*
 * Hand the packet to @sk as bpf_sk_assign() does. Listeners and bound UDP
 * sockets are freed only after a grace period (SOCK_RCU_FREE), and the
 * packet is delivered within this RCU read section, so it borrows the
 * socket without touching its reference count: no cache line shared by
 * every CPU is written per new flow, unlike TPROXY's sock_edemux. The
 * stack knows a borrowed socket by its destructor (skb_sk_is_prefetched),
 * and nf_queue takes a real reference before a packet leaves the section.
 *
 * Since 6.5 the stack chooses again within a reuseport group for a
 * borrowed socket (inet_steal_sock), hashing the packet's own port: the
 * member chosen here, as for a connection made straight to it, or named by
 * the rule, would lose the flow. A socket in a group, and one that is not
 * freed after a grace period, is therefore really referenced.
 */
static inline bool pd_assign(struct sk_buff *skb, struct sock *sk)
{
	bool hold = sk_is_refcounted(sk) ||
		    rcu_access_pointer(sk->sk_reuseport_cb);

	if (hold && !refcount_inc_not_zero(&sk->sk_refcnt))
		return false;
	skb_orphan(skb);
	skb->sk = sk;
	skb->destructor = hold ? sock_edemux : sock_pfree;
	return true;
}

static inline void pd_steer(const struct pd_datapath *dp, struct net *net,
			    struct sk_buff *skb, struct pd_packet *pkt,
			    struct pd_rule *rule)
{
	const struct pd_member *m = NULL;
	struct sock *sk, *tw = NULL;

	if (!pd_unicast(skb, pkt))
		return;

	if (pkt->proto == PD_TCP) {
		tw = pd_tcp_flow(net, skb, pkt);
		if (tw && (tw->sk_state != TCP_TIME_WAIT ||
			   !pkt->tcp_syn_only ||
			   !pd_tw_accepts_syn(net, tw, skb, pkt)))
			return;
		/* Ours, to retire it once the packet lets it go. */
		if (tw)
			refcount_inc(&tw->sk_refcnt);
	} else {
		sk = pd_udp_flow(net, pkt);
		/* Carried, so that UDP does not look it up a second time. */
		if (sk) {
			pd_assign(skb, sk);
			return;
		}
	}

	/*
	 * Where the receive paths have skb->data, and the header pulled as
	 * they pull it, for reuseport programs.
	 */
	if (!pskb_may_pull(skb, pkt->thoff + pkt->thlen))
		goto out;
	__skb_pull(skb, pkt->thoff);
	sk = pd_rule_pick(dp, net, skb, pkt, rule, &m);
	if (sk && pd_assign(skb, sk)) {
		if (pd_new_flow(pkt)) {
			pd_count(rule->counters, PD_COUNT_STEERED);
			if (m)
				pd_count(m->counters, PD_COUNT_STEERED);
		}
		/* Set before any table with a UDP rule was published. */
		if (pkt->proto == PD_UDP && READ_ONCE(dp->replies))
			pd_reply_note(READ_ONCE(dp->replies), sk, pkt, rule);
		if (tw) {
			inet_twsk_deschedule_put(inet_twsk(tw));
			tw = NULL;
		}
	} else if (pd_new_flow(pkt)) {
		pd_count(rule->counters, PD_COUNT_UNDELIVERABLE);
	}
	__skb_push(skb, pkt->thoff);
out:
	if (tw)
		sock_gen_put(tw);
}

/*
 * A packet whose port the table covers: the rule for its address, if
 * there is one, and then the flow's fate. Out of line, so that the miss
 * that most packets are keeps a small frame.
 */
static noinline void pd_hit(const struct pd_datapath *dp, struct net *net,
			    struct sk_buff *skb, u8 family, u8 proto,
			    unsigned int thoff, const __be16 *ports,
			    const struct pd_portset *set)
{
	struct pd_packet pkt = {
		.family	= family,
		.proto	= proto,
		.thoff	= thoff,
		.sport	= ports[0],
		.dport	= ports[1],
		.thlen	= sizeof(struct udphdr),
	};
	struct pd_rule *rule;

	pd_parse_flow(skb, &pkt);
	rule = pd_portset_match(set, family, &pkt.daddr);
	if (!rule || (proto == PD_TCP && !pd_parse_tcp(skb, &pkt))) {
		this_cpu_inc(dp->stats->misses);
		return;
	}
	this_cpu_inc(dp->stats->hits);
	pd_steer(dp, net, skb, &pkt, rule);
}

/*
 * What the fast path leaves: IPv6 extension headers and fragments, and
 * transport headers outside the linear data.
 */
static noinline unsigned int pd_hook_slow(const struct pd_datapath *dp,
					  struct sk_buff *skb,
					  const struct nf_hook_state *state,
					  const struct pd_table *table,
					  u8 family)
{
	const struct pd_portset *set;
	unsigned int thoff;
	const __be16 *ports;
	__be16 _ports[2];
	int protocol, proto;

	if (family == AF_INET) {
		protocol = ip_hdr(skb)->protocol;
		thoff = ip_hdrlen(skb);
	} else {
		int flags = 0, err;

		thoff = 0;
		protocol = ipv6_find_hdr(skb, &thoff, -1, NULL, &flags);
		/*
		 * IPv6 reassembles after LOCAL_IN, and only a datagram's
		 * first fragment holds its ports. While a UDP rule can match
		 * IPv6, UDP fragments are reassembled here, in netfilter's
		 * own queues (nf_defrag_ipv6's, not the stack's): only
		 * fragments delivered here pay, and no hook runs before
		 * routing. A fragment that waits for the others is stolen;
		 * the datagram goes on when the last one arrives. Anything
		 * else leaves the stack its own reassembly.
		 */
		if (protocol == IPPROTO_UDP && (flags & IP6_FH_F_FRAG) &&
		    READ_ONCE(dp->reassemble6)) {
			err = nf_ct_frag6_gather(state->net, skb,
						 IP6_DEFRAG_LOCAL_DELIVER);
			if (err == -EINPROGRESS)
				return NF_STOLEN;
			if (err)
				return NF_ACCEPT;
			thoff = 0;
			flags = 0;
			protocol = ipv6_find_hdr(skb, &thoff, -1, NULL, &flags);
		}
		if (protocol < 0 || (flags & IP6_FH_F_FRAG))
			return NF_ACCEPT;
	}

	proto = pd_proto(protocol);
	if (proto < 0)
		return NF_ACCEPT;
	ports = skb_header_pointer(skb, thoff, sizeof(_ports), _ports);
	if (!ports)
		return NF_ACCEPT;
	set = pd_table_port(table, proto, ntohs(ports[1]));
	if (set)
		pd_hit(dp, state->net, skb, family, proto, thoff, ports, set);
	else
		this_cpu_inc(dp->stats->misses);
	return NF_ACCEPT;
}

/*
 * The path every packet of a namespace with rules takes, kept short for
 * the common miss: a TCP or UDP header in the linear data right after the
 * network header, and no rule on its port.
 */
static __always_inline unsigned int pd_hook(void *priv, struct sk_buff *skb,
					    const struct nf_hook_state *state,
					    u8 family)
{
	const struct pd_datapath *dp = priv;
	const struct pd_portset *set;
	const struct pd_table *table;
	const __be16 *ports;
	unsigned int thoff;
	int protocol, proto;

	if (skb->sk && skb->sk->sk_state != TCP_TIME_WAIT)
		return NF_ACCEPT;
	table = rcu_dereference(dp->table);
	if (!table)
		return NF_ACCEPT;

	/* At LOCAL_IN skb->data is at the network header, reassembled or not. */
	if (family == AF_INET) {
		protocol = ip_hdr(skb)->protocol;
		thoff = ip_hdrlen(skb);
	} else {
		protocol = ipv6_hdr(skb)->nexthdr;
		thoff = sizeof(struct ipv6hdr);
	}
	proto = pd_proto(protocol);
	if (proto < 0) {
		if (family == AF_INET6 && ipv6_ext_hdr(protocol))
			return pd_hook_slow(dp, skb, state, table, family);
		return NF_ACCEPT;
	}
	if (unlikely(skb_headlen(skb) < thoff + 2 * sizeof(*ports)))
		return pd_hook_slow(dp, skb, state, table, family);

	ports = (const __be16 *)(skb->data + thoff);
	set = pd_table_port(table, proto, ntohs(ports[1]));
	if (likely(!set)) {
		this_cpu_inc(dp->stats->misses);
		return NF_ACCEPT;
	}
	pd_hit(dp, state->net, skb, family, proto, thoff, ports, set);
	return NF_ACCEPT;
}

unsigned int pd_hook_ipv4(void *priv, struct sk_buff *skb,
			  const struct nf_hook_state *state)
{
	return pd_hook(priv, skb, state, AF_INET);
}

unsigned int pd_hook_ipv6(void *priv, struct sk_buff *skb,
			  const struct nf_hook_state *state)
{
	return pd_hook(priv, skb, state, AF_INET6);
}
