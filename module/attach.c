// SPDX-License-Identifier: GPL-2.0
/* A namespace's netfilter hooks, taken and given back: see attach.h. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>

#include "attach.h"
#include "hook.h"
#include "pernet.h"

/* Long enough to ride out a script's del-then-add; short enough to matter. */
#define PD_ATTACH_LINGER	(2 * HZ)

static void pd_attach_drop(struct pd_net *pn)
{
	struct pd_attach *a = &pn->attach;

	if (!a->registered)
		return;
	nf_unregister_net_hooks(pn->net, a->ops, ARRAY_SIZE(a->ops));
	a->registered = false;
}

static void pd_attach_release(struct work_struct *work)
{
	struct pd_net *pn = container_of(to_delayed_work(work), struct pd_net,
					 attach.release);

	mutex_lock(&pn->lock);
	if (!pn->dying && !rcu_access_pointer(pn->dp->table))
		pd_attach_drop(pn);
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
	INIT_DELAYED_WORK(&a->release, pd_attach_release);
}

int pd_attach_update(struct pd_net *pn, bool want)
{
	struct pd_attach *a = &pn->attach;
	int err;

	lockdep_assert_held(&pn->lock);

	if (!want) {
		/* Every commit that leaves no rule restarts the linger. */
		if (a->registered)
			mod_delayed_work(pd_wq, &a->release, PD_ATTACH_LINGER);
		return 0;
	}
	if (a->registered)
		return 0;
	err = nf_register_net_hooks(pn->net, a->ops, ARRAY_SIZE(a->ops));
	if (!err)
		a->registered = true;
	return err;
}

void pd_attach_stop(struct pd_net *pn)
{
	cancel_delayed_work_sync(&pn->attach.release);
	mutex_lock(&pn->lock);
	pd_attach_drop(pn);
	mutex_unlock(&pn->lock);
}
