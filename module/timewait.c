// SPDX-License-Identifier: GPL-2.0
/*
 * A SYN that meets a TIME_WAIT connection is a new flow only when TCP
 * itself would let it reopen the connection (tcp_timewait_state_process()
 * answering TCP_TW_SYN). Only then may a rule's target take it, and the
 * TIME_WAIT socket be retired. What TCP would refuse, a segment with a bad
 * checksum or an old duplicate, stays with the TIME_WAIT socket, which
 * answers it as it would without the rule.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/netfilter.h>
#include <linux/skbuff.h>
#include <linux/tcp.h>
#include <linux/string.h>
#include <net/inet_timewait_sock.h>
#include <net/tcp.h>

#include "packet.h"
#include "timewait.h"

/* The segment's timestamp value, parsed as tcp_parse_options() does. */
static bool pd_tcp_tsval(const struct net *net, const struct sk_buff *skb,
			 const struct pd_packet *pkt, u32 *tsval)
{
	unsigned int len = pkt->thlen - sizeof(struct tcphdr), i = 0;
	u8 buf[MAX_TCP_OPTION_SPACE];
	const u8 *opt;

	if (!len || !READ_ONCE(net->ipv4.sysctl_tcp_timestamps))
		return false;
	opt = skb_header_pointer(skb, pkt->thoff + sizeof(struct tcphdr), len,
				 buf);
	if (!opt)
		return false;

	while (i < len) {
		u8 kind = opt[i], size;

		if (kind == TCPOPT_EOL)
			break;
		if (kind == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= len)
			break;
		size = opt[i + 1];
		if (size < 2 || size > len - i)
			break;
		if (kind == TCPOPT_TIMESTAMP && size == TCPOLEN_TIMESTAMP) {
			__be32 val;

			memcpy(&val, opt + i + 2, sizeof(val));
			*tsval = ntohl(val);
			return true;
		}
		i += size;
	}
	return false;
}

bool pd_tw_accepts_syn(struct net *net, struct sock *tw, struct sk_buff *skb,
		       const struct pd_packet *pkt)
{
	const struct tcp_timewait_sock *tcptw = tcp_twsk(tw);
	struct tcp_options_received opt = {};
	const struct tcphdr *th;
	struct tcphdr _th;
	u32 rcv_nxt;

	/* A FIN_WAIT2 connection answers a SYN with a reset. */
	if (READ_ONCE(inet_twsk(tw)->tw_substate) != TCP_TIME_WAIT)
		return false;
	th = skb_header_pointer(skb, pkt->thoff, sizeof(_th), &_th);
	if (!th)
		return false;
	if (nf_checksum(skb, NF_INET_LOCAL_IN, pkt->thoff, IPPROTO_TCP,
			pkt->family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6))
		return false;

	opt.ts_recent_stamp = READ_ONCE(tcptw->tw_ts_recent_stamp);
	if (opt.ts_recent_stamp && pd_tcp_tsval(net, skb, pkt, &opt.rcv_tsval)) {
		opt.saw_tstamp = 1;
		opt.ts_recent = READ_ONCE(tcptw->tw_ts_recent);
		if (tcp_paws_reject(&opt, 0))
			return false;
	}

	rcv_nxt = READ_ONCE(tcptw->tw_rcv_nxt);
	return after(ntohl(th->seq), rcv_nxt) ||
	       (opt.saw_tstamp && (s32)(opt.ts_recent - opt.rcv_tsval) < 0);
}
