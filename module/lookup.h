/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Socket lookups, made as the TCP and UDP receive paths make them, from
 * LOCAL_IN: with the devices they use (so a VRF's sockets are found), and
 * with skb->data where they have it, at the transport header, so that a
 * reuseport group's BPF program reads the bytes it would read for a
 * connection made straight to the target port. Inline: they are on the
 * packet path, and each is one call into the stack.
 */
#ifndef _PD_LOOKUP_H
#define _PD_LOOKUP_H

#include <linux/skbuff.h>

#include "compat.h"
#include "packet.h"

/* The flow's TCP socket (established, request or TIME_WAIT), referenced. */
static inline struct sock *pd_lookup_established(struct net *net,
						 const struct pd_packet *pkt)
{
	if (pkt->family == AF_INET)
		return pd_inet_lookup_established(net, pkt->saddr.v4, pkt->sport,
						  pkt->daddr.v4,
						  ntohs(pkt->dport), pkt->dif,
						  pkt->sdif);
	return pd_inet6_lookup_established(net, &pkt->saddr.v6, pkt->sport,
					   &pkt->daddr.v6, ntohs(pkt->dport),
					   pkt->dif, pkt->sdif);
}

/*
 * The listener for the packet's addresses with @port; RCU, no reference.
 * @skb->data is at the TCP header.
 */
static inline struct sock *pd_lookup_listener(struct net *net,
					      struct sk_buff *skb,
					      const struct pd_packet *pkt,
					      __be16 port)
{
	if (pkt->family == AF_INET)
		return pd_inet_lookup_listener(net, skb, pkt->thlen,
					       pkt->saddr.v4, pkt->sport,
					       pkt->daddr.v4, ntohs(port),
					       pkt->dif, pkt->sdif);
	return pd_inet6_lookup_listener(net, skb, pkt->thlen, &pkt->saddr.v6,
					pkt->sport, &pkt->daddr.v6,
					ntohs(port), pkt->dif, pkt->sdif);
}

/*
 * The UDP socket for the packet's addresses with @port; RCU, no reference.
 * @skb, when given, has its data at the UDP header; without it a reuseport
 * group picks by hash alone.
 */
static inline struct sock *pd_lookup_udp(struct net *net, struct sk_buff *skb,
					 const struct pd_packet *pkt,
					 __be16 port)
{
	if (pkt->family == AF_INET)
		return pd_udp4_lib_lookup(net, pkt->saddr.v4, pkt->sport,
					  pkt->daddr.v4, port, pkt->dif,
					  pkt->sdif, skb);
	return pd_udp6_lib_lookup(net, &pkt->saddr.v6, pkt->sport,
				  &pkt->daddr.v6, port, pkt->dif, pkt->sdif,
				  skb);
}

#endif /* _PD_LOOKUP_H */
