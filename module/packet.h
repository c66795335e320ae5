/* SPDX-License-Identifier: GPL-2.0 */
/* The facts about one packet that dispatch decisions need. */
#ifndef _PD_PACKET_H
#define _PD_PACKET_H

#include <linux/types.h>

#include "rule.h"

struct pd_packet {
	union pd_addr	saddr;
	union pd_addr	daddr;
	__be16		sport;
	__be16		dport;
	u8		family;		/* AF_INET or AF_INET6 */
	u8		proto;		/* enum pd_proto */
	bool		tcp_syn_only;	/* SYN without ACK, RST or FIN */
	u8		thlen;		/* the TCP (options included) or UDP header */
	u16		thoff;		/* from the network header to that header */
	/* The devices the stack's own lookups use, a VRF's included. */
	int		dif;
	int		sdif;
};

#endif /* _PD_PACKET_H */
