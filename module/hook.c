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
 *     not run on loopback, nor when it is switched off), except a SYN that
 *     TCP would let reopen a TIME_WAIT connection: that is a new flow;
 *  4. the rule's target takes the new flow if it can; if it cannot, the
 *     stack's normal lookup answers, exactly as without the rule.
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
#include <net/route.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "hook.h"
#include "lookup.h"
#include "packet.h"
#include "pernet.h"
#include "reaper.h"
#include "table.h"
#include "timewait.h"

static bool pd_parse_ports(struct sk_buff *skb, u8 protocol,
			   unsigned int thoff, struct pd_packet *pkt)
{
	pkt->thoff = thoff;

	if (protocol == IPPROTO_TCP) {
		const struct tcphdr *th;
		struct tcphdr _th;

		th = skb_header_pointer(skb, thoff, sizeof(_th), &_th);
		/* TCP drops a header shorter than its fixed part. */
		if (!th || th->doff < sizeof(*th) / 4)
			return false;
		pkt->proto = PD_TCP;
		pkt->sport = th->source;
		pkt->dport = th->dest;
		pkt->tcp_syn_only = th->syn && !th->ack && !th->rst && !th->fin;
		pkt->thlen = __tcp_hdrlen(th);
		return true;
	}

	if (protocol == IPPROTO_UDP) {
		const struct udphdr *uh;
		struct udphdr _uh;

		uh = skb_header_pointer(skb, thoff, sizeof(_uh), &_uh);
		if (!uh)
			return false;
		pkt->proto = PD_UDP;
		pkt->sport = uh->source;
		pkt->dport = uh->dest;
		pkt->tcp_syn_only = false;
		pkt->thlen = sizeof(*uh);
		return true;
	}

	return false;
}

/* What the table needs. IPv4 reaches LOCAL_IN reassembled. */
static bool pd_parse_ipv4(struct sk_buff *skb, struct pd_packet *pkt)
{
	const struct iphdr *iph = ip_hdr(skb);

	pkt->family = AF_INET;
	pkt->daddr.v4 = iph->daddr;
	return pd_parse_ports(skb, iph->protocol, ip_hdrlen(skb), pkt);
}

static bool pd_parse_ipv6(struct sk_buff *skb, struct pd_packet *pkt)
{
	const struct ipv6hdr *ip6h = ipv6_hdr(skb);
	unsigned int thoff = sizeof(*ip6h);
	int protocol = ip6h->nexthdr, flags = 0;

	pkt->family = AF_INET6;
	pkt->daddr.v6 = ip6h->daddr;
	/* Most packets have no extension header to walk. */
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) {
		thoff = 0;
		protocol = ipv6_find_hdr(skb, &thoff, -1, NULL, &flags);
		/* A fragment here is one that netfilter did not reassemble. */
		if (protocol < 0 || (flags & IP6_FH_F_FRAG))
			return false;
	}
	return pd_parse_ports(skb, protocol, thoff, pkt);
}

/* The rest of the flow's identity, for a packet that a rule covers. */
static void pd_parse_flow(const struct sk_buff *skb, struct pd_packet *pkt)
{
	if (pkt->family == AF_INET) {
		pkt->saddr.v4 = ip_hdr(skb)->saddr;
		pkt->dif = inet_iif(skb);
		pkt->sdif = inet_sdif(skb);
	} else {
		pkt->saddr.v6 = ipv6_hdr(skb)->saddr;
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
 * The TCP socket the flow already has, referenced: the TIME_WAIT socket
 * that early demux gave the packet (any other made the hook return), or
 * what the stack's own lookup finds.
 */
static struct sock *pd_tcp_flow(struct net *net, struct sk_buff *skb,
				const struct pd_packet *pkt)
{
	struct sock *sk = skb->sk;

	if (sk) {
		refcount_inc(&sk->sk_refcnt);
		return sk;
	}
	return pd_lookup_established(net, pkt);
}

static bool pd_udp_connected(struct net *net, const struct pd_packet *pkt)
{
	struct sock *sk = pd_lookup_udp(net, NULL, pkt, pkt->dport);

	return sk && READ_ONCE(sk->sk_state) == TCP_ESTABLISHED;
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
static bool pd_assign(struct sk_buff *skb, struct sock *sk)
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

static void pd_steer(const struct pd_datapath *dp, struct net *net,
		     struct sk_buff *skb, struct pd_packet *pkt,
		     struct pd_rule *rule)
{
	struct sock *sk, *tw = NULL;

	if (!pd_unicast(skb, pkt))
		return;
	pd_parse_flow(skb, pkt);

	if (pkt->proto == PD_TCP) {
		tw = pd_tcp_flow(net, skb, pkt);
		if (tw && (tw->sk_state != TCP_TIME_WAIT ||
			   !pkt->tcp_syn_only ||
			   !pd_tw_accepts_syn(net, tw, skb, pkt)))
			goto out;
	} else if (pd_udp_connected(net, pkt)) {
		return;
	}

	/*
	 * Where the receive paths have skb->data, and the header pulled as
	 * they pull it, for reuseport programs.
	 */
	if (!pskb_may_pull(skb, pkt->thoff + pkt->thlen))
		goto out;
	__skb_pull(skb, pkt->thoff);
	sk = pd_target_pick(net, skb, pkt, &rule->target);
	if (sk && pd_assign(skb, sk)) {
		this_cpu_inc(rule->stats->steered);
		if (tw) {
			inet_twsk_deschedule_put(inet_twsk(tw));
			tw = NULL;
		}
	} else {
		this_cpu_inc(rule->stats->undeliverable);
		if (pd_target_closed(&rule->target))
			pd_reaper_kick(dp->pn);
	}
	__skb_push(skb, pkt->thoff);
out:
	if (tw)
		sock_gen_put(tw);
}

static __always_inline unsigned int pd_hook(void *priv, struct sk_buff *skb,
					    const struct nf_hook_state *state,
					    u8 family)
{
	const struct pd_datapath *dp = priv;
	const struct pd_table *table;
	struct pd_packet pkt;
	struct pd_rule *rule;
	bool parsed;

	if (skb->sk && skb->sk->sk_state != TCP_TIME_WAIT)
		return NF_ACCEPT;
	table = rcu_dereference(dp->table);
	if (!table)
		return NF_ACCEPT;

	if (family == AF_INET)
		parsed = pd_parse_ipv4(skb, &pkt);
	else
		parsed = pd_parse_ipv6(skb, &pkt);
	if (!parsed)
		return NF_ACCEPT;

	rule = pd_table_lookup(table, pkt.proto, ntohs(pkt.dport), family,
			       &pkt.daddr);
	if (!rule) {
		this_cpu_inc(dp->stats->misses);
		return NF_ACCEPT;
	}
	this_cpu_inc(dp->stats->hits);
	pd_steer(dp, state->net, skb, &pkt, rule);
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
