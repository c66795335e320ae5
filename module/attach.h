/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What a namespace takes from netfilter for its table: the two LOCAL_IN
 * hooks, while it has rules, and IPv6 reassembly, while a UDP rule can
 * match IPv6 (IPv4 is reassembled before LOCAL_IN anyway; IPv6 only after
 * it, and a datagram's ports are in its first fragment alone). A namespace
 * that never had a rule takes nothing and pays nothing per packet.
 *
 * What a commit needs is taken before its table is published. What it no
 * longer needs is given back only after PD_ATTACH_LINGER without a need,
 * so that an add/del loop does not register and unregister on every turn:
 * each registration takes netfilter's global mutex, and the first hook of
 * its kind on the machine flips a static key on every CPU.
 */
#ifndef _PD_ATTACH_H
#define _PD_ATTACH_H

#include <linux/bits.h>
#include <linux/netfilter.h>
#include <linux/workqueue.h>

struct pd_net;

#define PD_NEED_HOOKS	BIT(0)
#define PD_NEED_DEFRAG6	BIT(1)

struct pd_attach {
	struct nf_hook_ops	ops[2];		/* IPv4, IPv6; priv: pd_datapath */
	unsigned int		held;		/* PD_NEED_* in place */
	unsigned int		rules_defrag6;	/* published rules needing it */
	struct delayed_work	release;
};

void pd_attach_init(struct pd_net *pn);
/* Under pd_net.lock: take what @need lacks, schedule the release of the rest. */
int pd_attach_update(struct pd_net *pn, unsigned int need);
/* Namespace exit: give everything back; no release runs after this. */
void pd_attach_stop(struct pd_net *pn);

#endif /* _PD_ATTACH_H */
