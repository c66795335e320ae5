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
	int		ifindex;	/* the device it came in on */
	int		doff;		/* from the network header to the payload */
};

#endif /* _PD_PACKET_H */
