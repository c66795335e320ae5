/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Replies of steered UDP flows. A UDP target bound to another port (or
 * another address) than the one the client sent to would answer from its
 * own, and a client with a connected socket (dig, the glibc resolver,
 * every QUIC client) drops such an answer. So each steered UDP flow is
 * remembered, by target socket and client address and port, and what the
 * target sends back to that client leaves from the address and port the
 * client used: rewritten at LOCAL_OUT, before conntrack, so that every
 * later hook and the wire see one flow.
 *
 * A flow lives as long as conntrack keeps a UDP flow: 30 s after its last
 * datagram, or 120 s once it has had replies for more than 2 s (a stream);
 * a NAT in front of the host forgets the client on that schedule, so a
 * longer memory would serve no one. It also leaves with its rule (a
 * replace that keeps the target hands it on, with the counters), and a
 * namespace remembers at most max_udp_flows flows: when full, a new flow
 * takes the place of an expired or never answered one in its bucket, or
 * is not remembered and counted as missed. Each flow is charged to the
 * memory cgroup of the rule's owner, and a flow that the cgroup cannot pay
 * for is missed too.
 */
#ifndef _PD_REPLY_H
#define _PD_REPLY_H

#include <linux/netfilter.h>
#include <linux/types.h>

struct pd_net;
struct pd_packet;
struct pd_replies;
struct pd_rule;
struct sock;
struct sk_buff;

extern unsigned int pd_max_udp_flows;
extern unsigned int pd_udp_timeout;
extern unsigned int pd_udp_timeout_stream;

int pd_replies_init(void);
void pd_replies_exit(void);

/* Under pd_net.lock, before a table with a UDP rule is published. */
int pd_replies_prepare(struct pd_net *pn);
/* Namespace exit, once no packet can reach the flows. */
void pd_replies_destroy(struct pd_net *pn);

/*
 * Under pd_net.lock, after a commit marked its leaving rules gone: their
 * flows follow the rule that replaced them, or leave.
 */
void pd_replies_forget(struct pd_net *pn);

void pd_replies_stats(struct pd_net *pn, u32 *flows, u64 *missed);

/* From the LOCAL_IN hook: @sk took the UDP datagram that @pkt describes. */
void pd_reply_note(struct pd_replies *r, const struct sock *sk,
		   const struct pd_packet *pkt, struct pd_rule *rule);

unsigned int pd_reply_hook_ipv4(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state);
unsigned int pd_reply_hook_ipv6(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state);

#endif /* _PD_REPLY_H */
