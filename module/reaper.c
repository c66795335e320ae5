// SPDX-License-Identifier: GPL-2.0
/* Removing rules whose socket closed: see reaper.h. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/memcontrol.h>
#include <linux/rwsem.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/workqueue.h>

#include "pernet.h"
#include "reaper.h"
#include "rule.h"
#include "txn.h"

#define PD_REAP_INTERVAL	(HZ / 2)

/*
 * A reaper announces what it removes on the netlink family, so on unload
 * every reaper must be done before the family is unregistered: its group
 * ids may belong to another family right after.
 */
static DECLARE_RWSEM(pd_reaper_gate);
static bool pd_reapers_stopped;

/*
 * Under pn->lock. An open batch does not hold the reaper back: its own
 * commit builds the table as published, without the batch's staging. A
 * rule the batch is removing already is left to the batch.
 */
void pd_reap_locked(struct pd_net *pn)
{
	struct pd_txn *txn = NULL;
	struct pd_rule *rule;

	list_for_each_entry(rule, &pn->sock_rules, sock_node) {
		cond_resched();
		if (rule->staged_del || !pd_rule_closed(rule))
			continue;
		if (!txn) {
			txn = pd_txn_begin(0);
			if (!txn)
				return;
		}
		if (pd_txn_reap(pn, txn, rule))
			break;
	}
	/* On failure the rules stay, and the next round tries again. */
	if (txn)
		pd_txn_commit(pn, txn, NULL);
}

void pd_reaper_work(struct work_struct *work)
{
	struct pd_net *pn = container_of(to_delayed_work(work), struct pd_net,
					 reaper);
	struct mem_cgroup *old_memcg;

	clear_bit(0, &pn->reaper_kicked);
	down_read(&pd_reaper_gate);
	if (!pd_reapers_stopped) {
		mutex_lock(&pn->lock);
		if (!pn->dying) {
			old_memcg = set_active_memcg(pn->memcg);
			pd_reap_locked(pn);
			set_active_memcg(old_memcg);
			pd_reaper_arm(pn);
		}
		mutex_unlock(&pn->lock);
	}
	up_read(&pd_reaper_gate);
}

/* Under pn->lock, from a request: its cgroup pays for the next reaps. */
void pd_reaper_bill_current(struct pd_net *pn)
{
	struct mem_cgroup *memcg = get_mem_cgroup_from_mm(current->mm);

	if (memcg == pn->memcg) {
		mem_cgroup_put(memcg);
		return;
	}
	mem_cgroup_put(pn->memcg);
	pn->memcg = memcg;
}

/* The namespace's end, once no reaper can run. */
void pd_reaper_release(struct pd_net *pn)
{
	mem_cgroup_put(pn->memcg);
	pn->memcg = NULL;
}

/* Module unload: no reaper runs, or will run, past this point. */
void pd_reapers_stop(void)
{
	down_write(&pd_reaper_gate);
	pd_reapers_stopped = true;
	up_write(&pd_reaper_gate);
}

/* Under pn->lock: keep watching while there is something to watch. */
void pd_reaper_arm(struct pd_net *pn)
{
	if (!pn->dying && !list_empty(&pn->sock_rules))
		queue_delayed_work(pd_wq, &pn->reaper, PD_REAP_INTERVAL);
}

/* From any context, packets included: look now, once. */
void pd_reaper_kick(struct pd_net *pn)
{
	if (!test_and_set_bit(0, &pn->reaper_kicked))
		mod_delayed_work(pd_wq, &pn->reaper, 0);
}
