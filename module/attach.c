// SPDX-License-Identifier: GPL-2.0
/* Taking netfilter's hooks and reassembly for a namespace: see attach.h. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <net/netfilter/ipv6/nf_defrag_ipv6.h>

#include "attach.h"
#include "hook.h"
#include "pernet.h"

/* Long enough to ride out a script's del-then-add; short enough to matter. */
#define PD_ATTACH_LINGER	(2 * HZ)

static void pd_attach_drop(struct pd_net *pn, unsigned int what)
{
	struct pd_attach *a = &pn->attach;

	what &= a->held;
	if (what & PD_NEED_HOOKS)
		nf_unregister_net_hooks(pn->net, a->ops, ARRAY_SIZE(a->ops));
	if (what & PD_NEED_DEFRAG6)
		nf_defrag_ipv6_disable(pn->net);
	a->held &= ~what;
}

static unsigned int pd_attach_needed(struct pd_net *pn)
{
	unsigned int need = 0;

	if (rcu_access_pointer(pn->dp->table))
		need |= PD_NEED_HOOKS;
	if (pn->attach.rules_defrag6)
		need |= PD_NEED_DEFRAG6;
	return need;
}

static void pd_attach_release(struct work_struct *work)
{
	struct pd_net *pn = container_of(to_delayed_work(work), struct pd_net,
					 attach.release);

	mutex_lock(&pn->lock);
	if (!pn->dying)
		pd_attach_drop(pn, ~pd_attach_needed(pn));
	mutex_unlock(&pn->lock);
}

void pd_attach_init(struct pd_net *pn)
{
	struct pd_attach *a = &pn->attach;

	/*
	 * LOCAL_IN: the stack has decided to deliver here. NAT is done, VRF
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

int pd_attach_update(struct pd_net *pn, unsigned int need)
{
	struct pd_attach *a = &pn->attach;
	unsigned int missing = need & ~a->held;
	int err = 0;

	lockdep_assert_held(&pn->lock);

	if (missing & PD_NEED_DEFRAG6) {
		err = nf_defrag_ipv6_enable(pn->net);
		if (err)
			goto out;
		a->held |= PD_NEED_DEFRAG6;
	}
	if (missing & PD_NEED_HOOKS) {
		err = nf_register_net_hooks(pn->net, a->ops,
					    ARRAY_SIZE(a->ops));
		if (err)
			goto out;
		a->held |= PD_NEED_HOOKS;
	}
out:
	/* What a failed commit took, its table does not need. */
	if (err)
		need = pd_attach_needed(pn);
	/* Every change of need restarts the linger. */
	if (a->held & ~need)
		mod_delayed_work(pd_wq, &a->release, PD_ATTACH_LINGER);
	return err;
}

/* After pd_net.dying is set: a release still queued then does nothing. */
void pd_attach_stop(struct pd_net *pn)
{
	cancel_delayed_work_sync(&pn->attach.release);
	mutex_lock(&pn->lock);
	pd_attach_drop(pn, pn->attach.held);
	mutex_unlock(&pn->lock);
}
