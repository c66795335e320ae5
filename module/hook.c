// SPDX-License-Identifier: GPL-2.0
/*
 * The packet path. One PRE_ROUTING hook per family, right after mangle
 * (where TPROXY runs) and well after defragmentation, so that the ports of
 * every datagram are visible and a fragmented one is steered whole.
 *
 * For each TCP or UDP packet of a namespace that has rules:
 *  1. the table: no rule covers the port, nothing else happens;
 *  2. a flow that already has a socket keeps it (established, handshaking
 *     or TIME_WAIT TCP, connected UDP), except a SYN that reopens a
 *     TIME_WAIT connection, which is a new flow, as for TPROXY;
 *  3. the rule's target takes the new flow if it can; if it cannot, the
 *     stack's normal lookup answers, exactly as without the rule.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <net/inet_timewait_sock.h>
#include <net/ip.h>
#include <net/ipv6.h>
#include <net/netfilter/ipv4/nf_defrag_ipv4.h>
#include <net/netfilter/ipv6/nf_defrag_ipv6.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "hook.h"
#include "lookup.h"
#include "packet.h"
#include "pernet.h"
#include "reaper.h"
#include "table.h"

static bool pd_parse_ports(struct sk_buff *skb, u8 protocol,
			   unsigned int thoff, struct pd_packet *pkt)
{
	if (protocol == IPPROTO_TCP) {
		const struct tcphdr *th;
		struct tcphdr _th;

		th = skb_header_pointer(skb, thoff, sizeof(_th), &_th);
		if (!th)
			return false;
		pkt->proto = PD_TCP;
		pkt->sport = th->source;
		pkt->dport = th->dest;
		pkt->tcp_syn_only = th->syn && !th->ack && !th->rst && !th->fin;
		pkt->doff = thoff + __tcp_hdrlen(th);
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
		pkt->doff = thoff + sizeof(*uh);
		return true;
	}

	return false;
}

static bool pd_parse_ipv4(struct sk_buff *skb, struct pd_packet *pkt)
{
	const struct iphdr *iph = ip_hdr(skb);

	/* Defragmentation ran first; a fragment here is one it gave up on. */
	if (ip_is_fragment(iph))
		return false;
	if (!pd_parse_ports(skb, iph->protocol, ip_hdrlen(skb), pkt))
		return false;
	pkt->family = AF_INET;
	pkt->saddr.v4 = iph->saddr;
	pkt->daddr.v4 = iph->daddr;
	return true;
}

static bool pd_parse_ipv6(struct sk_buff *skb, struct pd_packet *pkt)
{
	const struct ipv6hdr *ip6h = ipv6_hdr(skb);
	unsigned int thoff = 0;
	int protocol, flags = 0;

	protocol = ipv6_find_hdr(skb, &thoff, -1, NULL, &flags);
	if (protocol < 0 || (flags & IP6_FH_F_FRAG))
		return false;
	if (!pd_parse_ports(skb, protocol, thoff, pkt))
		return false;
	pkt->family = AF_INET6;
	pkt->saddr.v6 = ip6h->saddr;
	pkt->daddr.v6 = ip6h->daddr;
	return true;
}

/*
 * Does the packet belong to a flow that already has a socket? A SYN that
 * meets a TIME_WAIT socket does not: the TIME_WAIT socket is handed back,
 * referenced, to be retired only if the target takes the new flow.
 */
static bool pd_flow_has_socket(struct net *net, const struct pd_packet *pkt,
			       struct sock **tw)
{
	struct sock *sk;

	if (pkt->proto == PD_UDP) {
		sk = pd_lookup_udp(net, pkt, pkt->dport);
		return sk && READ_ONCE(sk->sk_state) == TCP_ESTABLISHED;
	}

	sk = pd_lookup_established(net, pkt);
	if (!sk)
		return false;
	if (sk->sk_state == TCP_TIME_WAIT && pkt->tcp_syn_only) {
		*tw = sk;
		return false;
	}
	sock_gen_put(sk);
	return true;
}

/*
 * Hand the packet to @sk as bpf_sk_assign() does. Listeners and bound UDP
 * sockets are freed only after a grace period (SOCK_RCU_FREE), and the
 * packet is delivered within this RCU read section, so it borrows the
 * socket without touching its reference count: no cache line shared by
 * every CPU is written per new flow, unlike TPROXY's sock_edemux. The
 * stack knows a borrowed socket by its destructor (skb_sk_is_prefetched),
 * and nf_queue takes a real reference before a packet leaves the section.
 * Other sockets get a real reference, which sock_pfree() drops.
 */
static bool pd_assign(struct sk_buff *skb, struct sock *sk)
{
	if (sk_is_refcounted(sk) && !refcount_inc_not_zero(&sk->sk_refcnt))
		return false;
	skb_orphan(skb);
	skb->sk = sk;
	skb->destructor = sock_pfree;
	return true;
}

static void pd_dispatch(struct net *net, struct sk_buff *skb,
			const struct pd_packet *pkt)
{
	struct pd_net *pn = pd_net(net);
	const struct pd_table *table;
	struct sock *sk, *tw = NULL;
	struct pd_rule *rule;

	table = rcu_dereference(pn->table);
	if (!table)
		return;

	this_cpu_inc(pn->stats->lookups);
	rule = pd_table_lookup(table, pkt->proto, ntohs(pkt->dport),
			       pkt->family, &pkt->daddr);
	if (!rule) {
		this_cpu_inc(pn->stats->misses);
		return;
	}
	this_cpu_inc(pn->stats->hits);

	if (pd_flow_has_socket(net, pkt, &tw))
		return;
	if (!pd_dst_is_local(net, skb, pkt))
		goto out;

	sk = pd_target_pick(net, skb, pkt, &rule->target);
	if (!sk || !pd_assign(skb, sk)) {
		this_cpu_inc(rule->stats->undeliverable);
		if (pd_target_closed(&rule->target))
			pd_reaper_kick(pn);
		goto out;
	}
	this_cpu_inc(rule->stats->steered);

	if (tw) {
		inet_twsk_deschedule_put(inet_twsk(tw));
		tw = NULL;
	}
out:
	if (tw)
		sock_gen_put(tw);
}

static unsigned int pd_hook_ipv4(void *priv, struct sk_buff *skb,
				 const struct nf_hook_state *state)
{
	struct pd_packet pkt;

	/* Someone earlier (TPROXY, bpf_sk_assign) chose a socket already. */
	if (skb->sk)
		return NF_ACCEPT;
	if (pd_parse_ipv4(skb, &pkt)) {
		pkt.ifindex = state->in->ifindex;
		pd_dispatch(state->net, skb, &pkt);
	}
	return NF_ACCEPT;
}

static unsigned int pd_hook_ipv6(void *priv, struct sk_buff *skb,
				 const struct nf_hook_state *state)
{
	struct pd_packet pkt;

	if (skb->sk)
		return NF_ACCEPT;
	if (pd_parse_ipv6(skb, &pkt)) {
		pkt.ifindex = state->in->ifindex;
		pd_dispatch(state->net, skb, &pkt);
	}
	return NF_ACCEPT;
}

static const struct nf_hook_ops pd_nf_ops[] = {
	{
		.hook		= pd_hook_ipv4,
		.pf		= NFPROTO_IPV4,
		.hooknum	= NF_INET_PRE_ROUTING,
		.priority	= NF_IP_PRI_MANGLE + 1,
	},
	{
		.hook		= pd_hook_ipv6,
		.pf		= NFPROTO_IPV6,
		.hooknum	= NF_INET_PRE_ROUTING,
		.priority	= NF_IP6_PRI_MANGLE + 1,
	},
};

int pd_hooks_enable(struct net *net)
{
	int err;

	err = nf_defrag_ipv4_enable(net);
	if (err)
		return err;
	err = nf_defrag_ipv6_enable(net);
	if (err)
		goto v4;
	err = nf_register_net_hooks(net, pd_nf_ops, ARRAY_SIZE(pd_nf_ops));
	if (err)
		goto v6;
	return 0;

v6:
	nf_defrag_ipv6_disable(net);
v4:
	nf_defrag_ipv4_disable(net);
	return err;
}

void pd_hooks_disable(struct net *net)
{
	nf_unregister_net_hooks(net, pd_nf_ops, ARRAY_SIZE(pd_nf_ops));
	nf_defrag_ipv6_disable(net);
	nf_defrag_ipv4_disable(net);
}
