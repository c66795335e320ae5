// SPDX-License-Identifier: GPL-2.0
/* A namespace's netfilter hooks, taken and given back: see attach.h. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>

#include "attach.h"
#include "hook.h"
#include "pernet.h"
#include "reply.h"

/* Long enough to ride out a script's del-then-add; short enough to matter. */
#define PD_ATTACH_LINGER	(2 * HZ)

static void pd_attach_drop(struct pd_net *pn, bool in, bool replies)
{
	struct pd_attach *a = &pn->attach;

	if (in && a->registered) {
		nf_unregister_net_hooks(pn->net, a->ops, ARRAY_SIZE(a->ops));
		a->registered = false;
	}
	if (replies && a->reply_registered) {
		nf_unregister_net_hooks(pn->net, a->reply_ops,
					ARRAY_SIZE(a->reply_ops));
		a->reply_registered = false;
	}
}

static void pd_attach_release(struct work_struct *work)
{
	struct pd_net *pn = container_of(to_delayed_work(work), struct pd_net,
					 attach.release);

	mutex_lock(&pn->lock);
	if (!pn->dying)
		pd_attach_drop(pn, !rcu_access_pointer(pn->dp->table),
			       !pn->udp_rules);
	mutex_unlock(&pn->lock);
}

void pd_attach_init(struct pd_net *pn)
{
	struct pd_attach *a = &pn->attach;

	/*
	 * LOCAL_IN: the stack has decided to deliver here. NAT is done, a VRF
	 * has claimed the packet, IPv4 is reassembled, bridged frames never
	 * come, and early demux has given most packets of existing flows
	 * their socket. After input SNAT, which changes the source that the
	 * socket lookups must see.
	 */
	a->ops[0] = (struct nf_hook_ops){
		.hook		= pd_hook_ipv4,
		.priv		= pn->dp,
		.pf		= NFPROTO_IPV4,
		.hooknum	= NF_INET_LOCAL_IN,
		.priority	= NF_IP_PRI_NAT_SRC + 1,
	};
	a->ops[1] = (struct nf_hook_ops){
		.hook		= pd_hook_ipv6,
		.priv		= pn->dp,
		.pf		= NFPROTO_IPV6,
		.hooknum	= NF_INET_LOCAL_IN,
		.priority	= NF_IP6_PRI_NAT_SRC + 1,
	};
	/*
	 * LOCAL_OUT, before conntrack: a steered flow's reply is rewritten
	 * before conntrack, NAT and every later hook see it, so that they
	 * see the flow as the wire does. Forwarded packets never come.
	 */
	a->reply_ops[0] = (struct nf_hook_ops){
		.hook		= pd_reply_hook_ipv4,
		.pf		= NFPROTO_IPV4,
		.hooknum	= NF_INET_LOCAL_OUT,
		.priority	= NF_IP_PRI_CONNTRACK - 1,
	};
	a->reply_ops[1] = (struct nf_hook_ops){
		.hook		= pd_reply_hook_ipv6,
		.pf		= NFPROTO_IPV6,
		.hooknum	= NF_INET_LOCAL_OUT,
		.priority	= NF_IP6_PRI_CONNTRACK - 1,
	};
	INIT_DELAYED_WORK(&a->release, pd_attach_release);
}

void pd_attach_set_replies(struct pd_net *pn, struct pd_replies *r)
{
	pn->attach.reply_ops[0].priv = r;
	pn->attach.reply_ops[1].priv = r;
}

int pd_attach_update(struct pd_net *pn, bool want, bool want_replies)
{
	struct pd_attach *a = &pn->attach;
	int err;

	lockdep_assert_held(&pn->lock);

	/* Every commit that leaves hooks unwanted restarts the linger. */
	if ((!want && a->registered) || (!want_replies && a->reply_registered))
		mod_delayed_work(pd_wq, &a->release, PD_ATTACH_LINGER);

	if (want_replies && !a->reply_registered) {
		err = nf_register_net_hooks(pn->net, a->reply_ops,
					    ARRAY_SIZE(a->reply_ops));
		if (err)
			return err;
		a->reply_registered = true;
	}
	if (want && !a->registered) {
		err = nf_register_net_hooks(pn->net, a->ops, ARRAY_SIZE(a->ops));
		if (err)
			return err;
		a->registered = true;
	}
	return 0;
}

void pd_attach_stop(struct pd_net *pn)
{
	cancel_delayed_work_sync(&pn->attach.release);
	mutex_lock(&pn->lock);
	pd_attach_drop(pn, true, true);
	mutex_unlock(&pn->lock);
}
