/* SPDX-License-Identifier: GPL-2.0 */
/* Finding sockets in the stack's own tables, for one packet. */
#ifndef _PD_LOOKUP_H
#define _PD_LOOKUP_H

#include <linux/types.h>

struct net;
struct sk_buff;
struct sock;
struct pd_packet;

/* The flow's TCP socket (established, request or TIME_WAIT), referenced. */
struct sock *pd_lookup_established(struct net *net,
				   const struct pd_packet *pkt);
/*
 * The listener for the packet's addresses with @port; RCU, no reference.
 * @skb->data is at the TCP header.
 */
struct sock *pd_lookup_listener(struct net *net, struct sk_buff *skb,
				const struct pd_packet *pkt, __be16 port);
/*
 * The UDP socket for the packet's addresses with @port; RCU, no reference.
 * @skb, when given, has its data at the UDP header; without it a reuseport
 * group picks by hash alone.
 */
struct sock *pd_lookup_udp(struct net *net, struct sk_buff *skb,
			   const struct pd_packet *pkt, __be16 port);

#endif /* _PD_LOOKUP_H */
