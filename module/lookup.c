// SPDX-License-Identifier: GPL-2.0
/*
 * Socket lookups, as the TCP and UDP receive paths do them, but from
 * PRE_ROUTING: the network header is at skb->data, the device is the one
 * the packet arrived on, and no l3mdev has claimed it yet (sdif 0).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <net/addrconf.h>
#include <net/inet6_hashtables.h>
#include <net/inet_hashtables.h>
#include <net/route.h>
#include <net/udp.h>

#include "compat.h"
#include "lookup.h"
#include "packet.h"

struct sock *pd_lookup_established(struct net *net,
				   const struct pd_packet *pkt)
{
	struct inet_hashinfo *hinfo = net->ipv4.tcp_death_row.hashinfo;

	if (pkt->family == AF_INET)
		return __inet_lookup_established(net, hinfo, pkt->saddr.v4,
						 pkt->sport, pkt->daddr.v4,
						 ntohs(pkt->dport),
						 pkt->ifindex, 0);
	return __inet6_lookup_established(net, hinfo, &pkt->saddr.v6,
					  pkt->sport, &pkt->daddr.v6,
					  ntohs(pkt->dport), pkt->ifindex, 0);
}

/*
 * @doff runs from the network header to the payload, so that a reuseport
 * BPF program finds the payload where it would from the TCP receive path.
 */
struct sock *pd_lookup_listener(struct net *net, struct sk_buff *skb,
				const struct pd_packet *pkt, __be16 port)
{
	struct inet_hashinfo *hinfo = net->ipv4.tcp_death_row.hashinfo;

	if (pkt->family == AF_INET)
		return __inet_lookup_listener(net, hinfo, skb, pkt->doff,
					      pkt->saddr.v4, pkt->sport,
					      pkt->daddr.v4, ntohs(port),
					      pkt->ifindex, 0);
	return inet6_lookup_listener(net, hinfo, skb, pkt->doff,
				     &pkt->saddr.v6, pkt->sport,
				     &pkt->daddr.v6, ntohs(port),
				     pkt->ifindex, 0);
}

/*
 * Without the skb, reuseport groups pick by hash alone: a reuseport BPF
 * program would look for the UDP payload at skb->data, which here is the
 * network header.
 */
struct sock *pd_lookup_udp(struct net *net, const struct pd_packet *pkt,
			   __be16 port)
{
	if (pkt->family == AF_INET)
		return __udp4_lib_lookup(net, pkt->saddr.v4, pkt->sport,
					 pkt->daddr.v4, port, pkt->ifindex, 0,
					 pd_udp_table(net), NULL);
	return __udp6_lib_lookup(net, &pkt->saddr.v6, pkt->sport,
				 &pkt->daddr.v6, port, pkt->ifindex, 0,
				 pd_udp_table(net), NULL);
}

/*
 * A socket may only be handed packets this host will deliver locally: on
 * the forwarding path ip_forward() drops a packet that carries a socket.
 * Broadcast and multicast stay with the stack, which delivers them to
 * every socket that asked.
 */
bool pd_dst_is_local(struct net *net, const struct sk_buff *skb,
		     const struct pd_packet *pkt)
{
	if (pkt->family == AF_INET)
		return inet_addr_type_dev_table(net, skb->dev, pkt->daddr.v4) ==
		       RTN_LOCAL;
	return ipv6_chk_addr(net, &pkt->daddr.v6, NULL, 0);
}
