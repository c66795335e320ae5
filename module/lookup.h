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
/* The listener for the packet's addresses with @port; RCU, no reference. */
struct sock *pd_lookup_listener(struct net *net, struct sk_buff *skb,
				const struct pd_packet *pkt, __be16 port);
/* The UDP socket for the packet's addresses with @port; RCU, no reference. */
struct sock *pd_lookup_udp(struct net *net, const struct pd_packet *pkt,
			   __be16 port);
/* Is the destination a unicast address of this host? */
bool pd_dst_is_local(struct net *net, const struct sk_buff *skb,
		     const struct pd_packet *pkt);

#endif /* _PD_LOOKUP_H */
