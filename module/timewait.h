/* SPDX-License-Identifier: GPL-2.0 */
/* May this SYN reopen that TIME_WAIT connection? */
#ifndef _PD_TIMEWAIT_H
#define _PD_TIMEWAIT_H

#include <linux/types.h>

struct net;
struct sk_buff;
struct sock;
struct pd_packet;

/* @skb->data at the network header; @tw a TIME_WAIT socket. */
bool pd_tw_accepts_syn(struct net *net, struct sock *tw, struct sk_buff *skb,
		       const struct pd_packet *pkt);

#endif /* _PD_TIMEWAIT_H */
