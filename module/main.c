// SPDX-License-Identifier: GPL-2.0
/*
 * portdispatch: a programmable port-to-socket table. New TCP and UDP flows
 * for chosen ports (and, optionally, chosen local addresses) are handed to
 * chosen sockets, per network namespace, without rewriting any address.
 *
 * Module and namespace lifetimes live here; see hook.c for the packet
 * path, txn.c for how the table changes, netlink.c for the interface.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/log2.h>
#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include <linux/portdispatch.h>

#include "attach.h"
#include "compat.h"
#include "counters.h"
#include "group.h"
#include "netlink.h"
#include "pernet.h"
#include "portset.h"
#include "reaper.h"
#include "reply.h"
#include "rule.h"
#include "table.h"
#include "txn.h"

unsigned int pd_net_id __read_mostly;
struct workqueue_struct *pd_wq __read_mostly;

unsigned int pd_max_rules __read_mostly = 65536;
module_param_named(max_rules, pd_max_rules, uint, 0644);
MODULE_PARM_DESC(max_rules, "Most rules one network namespace may hold (default 65536)");

unsigned int pd_max_rules_total __read_mostly = 262144;
module_param_named(max_rules_total, pd_max_rules_total, uint, 0644);
MODULE_PARM_DESC(max_rules_total, "Most rules all network namespaces together may hold (default 262144)");

unsigned int pd_batch_idle_ms __read_mostly = 10000;
module_param_named(batch_idle_ms, pd_batch_idle_ms, uint, 0644);
MODULE_PARM_DESC(batch_idle_ms, "An open batch whose owner sends nothing for this long is dropped; 0: never (default 10000)");

static int __net_init pd_net_init(struct net *net)
{
	struct pd_net *pn = pd_net(net);
	int err;

	pn->net = net;
	pn->group_seed = get_random_u32();
	mutex_init(&pn->lock);
	INIT_LIST_HEAD(&pn->sock_rules);
	INIT_LIST_HEAD(&pn->dropped);
	INIT_DELAYED_WORK(&pn->reaper, pd_reaper_work);
	INIT_DELAYED_WORK(&pn->batch_idle, pd_batch_idle_work);

	/* A power-of-two size: kmalloc aligns it to a cache line. */
	BUILD_BUG_ON(!is_power_of_2(sizeof(*pn->dp)));
	pn->dp = kzalloc_obj(*pn->dp, GFP_KERNEL_ACCOUNT);
	if (!pn->dp)
		return -ENOMEM;
	pn->dp->pn = pn;
	err = -ENOMEM;
	pn->dp->stats = alloc_percpu_gfp(struct pd_ns_stats, GFP_KERNEL_ACCOUNT);
	if (!pn->dp->stats)
		goto free_dp;
	pd_store_init(&pn->store);
	pd_attach_init(pn);
	return 0;

free_dp:
	kfree(pn->dp);
	return err;
}

/* Stop packets first: the core waits a grace period before .exit. */
static void __net_exit pd_net_pre_exit(struct net *net)
{
	struct pd_net *pn = pd_net(net);

	mutex_lock(&pn->lock);
	pn->dying = true;
	mutex_unlock(&pn->lock);
	pd_attach_stop(pn);
}

static void __net_exit pd_net_exit(struct net *net)
{
	struct pd_net *pn = pd_net(net);
	struct pd_rule *rule;
	int proto;

	cancel_delayed_work_sync(&pn->batch_idle);
	cancel_delayed_work_sync(&pn->reaper);
	pd_replies_destroy(pn);

	mutex_lock(&pn->lock);
	if (pn->batch) {
		pd_txn_abort(pn, pn->batch);
		pn->batch = NULL;
	}
	pd_batch_forget_dropped(pn);
	/* No reader is left: the hooks went before the last grace period. */
	pd_table_destroy(rcu_dereference_protected(pn->dp->table, true));
	RCU_INIT_POINTER(pn->dp->table, NULL);
	pd_txn_host_release(pn->nr_rules);
	for (proto = 0; proto < PD_NPROTO; proto++) {
		while ((rule = pd_store_seek(&pn->store, proto, 0))) {
			pd_store_remove(&pn->store, rule);
			pd_rule_free(rule);
			cond_resched();
		}
	}
	mutex_unlock(&pn->lock);

	pd_reaper_release(pn);
	free_percpu(pn->dp->stats);
	kfree(pn->dp);
}

static struct pernet_operations pd_net_ops = {
	.init		= pd_net_init,
	.pre_exit	= pd_net_pre_exit,
	.exit		= pd_net_exit,
	.id		= &pd_net_id,
	.size		= sizeof(struct pd_net),
};

static int __init pd_init(void)
{
	int err;

	pd_portset_init();
	pd_groups_init();
	err = pd_counters_init();
	if (err)
		return err;
	err = pd_rules_init();
	if (err)
		goto counters_exit;
	err = pd_replies_init();
	if (err)
		goto rules_exit;
	/*
	 * Housekeeping (reaping, expiry, freeing after a grace period) with
	 * no use for the CPU that queued it: unbound, which 7.x kernels ask
	 * every workqueue to say (or WQ_PERCPU) and warn about otherwise.
	 */
	pd_wq = alloc_workqueue("portdispatch", WQ_UNBOUND, 0);
	if (!pd_wq) {
		err = -ENOMEM;
		goto replies_exit;
	}
	err = register_pernet_subsys(&pd_net_ops);
	if (err)
		goto destroy_wq;
	err = pd_nl_init();
	if (err)
		goto unregister_pernet;
	return 0;

unregister_pernet:
	unregister_pernet_subsys(&pd_net_ops);
destroy_wq:
	destroy_workqueue(pd_wq);
replies_exit:
	pd_replies_exit();
rules_exit:
	pd_rules_exit();
counters_exit:
	pd_counters_exit();
	return err;
}

static void __exit pd_exit(void)
{
	pd_reapers_stop();
	pd_nl_exit();
	unregister_pernet_subsys(&pd_net_ops);
	/* Let every commit's garbage reach the workqueue, then drain it. */
	rcu_barrier();
	destroy_workqueue(pd_wq);
	pd_replies_exit();
	pd_rules_exit();
	pd_counters_exit();
}

module_init(pd_init);
module_exit(pd_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Programmable port-to-socket dispatch for TCP and UDP");
MODULE_VERSION(PD_VERSION);
MODULE_ALIAS_GENL_FAMILY(PORTDISPATCH_FAMILY_NAME);
