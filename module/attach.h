/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A namespace's netfilter hooks: its two LOCAL_IN hooks, registered before
 * its first table is published, and two LOCAL_OUT hooks for the replies of
 * steered UDP flows (reply.h), registered while it has a UDP rule. A
 * namespace that never had a rule has none and pays nothing per packet;
 * one with TCP rules only pays nothing per packet it sends.
 *
 * When the last rule (UDP rule) goes, the hooks stay for PD_ATTACH_LINGER
 * more, so
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
struct pd_replies;

struct pd_attach {
	struct nf_hook_ops	ops[2];		/* IPv4, IPv6; priv: pd_datapath */
	struct nf_hook_ops	reply_ops[2];	/* IPv4, IPv6; priv: pd_replies */
	bool			registered;
	bool			reply_registered;
	struct delayed_work	release;
};

void pd_attach_init(struct pd_net *pn);
/* Once, under pd_net.lock, before the reply hooks are first wanted. */
void pd_attach_set_replies(struct pd_net *pn, struct pd_replies *r);
/*
 * Under pd_net.lock, before publishing a table: @want, a non-empty one;
 * @want_replies, one with a UDP rule.
 */
int pd_attach_update(struct pd_net *pn, bool want, bool want_replies);
/* Namespace exit, after pd_net.dying is set: no release runs after this. */
void pd_attach_stop(struct pd_net *pn);

#endif /* _PD_ATTACH_H */
