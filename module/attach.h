/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A namespace's netfilter hooks: its two LOCAL_IN hooks, registered before
 * its first table is published. A namespace that never had a rule has none
 * and pays nothing per packet.
 *
 * When the last rule goes, the hooks stay for PD_ATTACH_LINGER more, so
 * that an add/del loop does not register and unregister them on every
 * turn: each registration takes netfilter's global mutex, and the first
 * hook of its kind on the machine flips a static key on every CPU.
 */
#ifndef _PD_ATTACH_H
#define _PD_ATTACH_H

#include <linux/netfilter.h>
#include <linux/types.h>
#include <linux/workqueue.h>

struct pd_net;

struct pd_attach {
	struct nf_hook_ops	ops[2];		/* IPv4, IPv6; priv: pd_datapath */
	bool			registered;
	struct delayed_work	release;
};

void pd_attach_init(struct pd_net *pn);
/* Under pd_net.lock, before publishing a table: @want, a non-empty one. */
int pd_attach_update(struct pd_net *pn, bool want);
/* Namespace exit, after pd_net.dying is set: no release runs after this. */
void pd_attach_stop(struct pd_net *pn);

#endif /* _PD_ATTACH_H */
