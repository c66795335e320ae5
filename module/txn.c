// SPDX-License-Identifier: GPL-2.0
/* Transactions: staging, commit, abort, and freeing what a commit replaced. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/err.h>
#include <linux/memcontrol.h>
#include <linux/overflow.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <linux/portdispatch.h>

#include "attach.h"
#include "compat.h"
#include "gfp.h"
#include "group.h"
#include "netlink.h"
#include "pernet.h"
#include "reaper.h"
#include "reply.h"
#include "table.h"
#include "txn.h"

atomic_t pd_host_rules = ATOMIC_INIT(0);

/*
 * The host's count takes a rule when it is staged and gives one back when
 * its removal commits, so that concurrent namespaces cannot overshoot the
 * ceiling between staging and commit, and an abort gives back exactly
 * what the staging took.
 */
static bool pd_host_charge(struct pd_change *c, unsigned int n)
{
	unsigned int max = READ_ONCE(pd_max_rules_total);

	if (!n)
		return true;
	if (atomic_add_return(n, &pd_host_rules) > max) {
		atomic_sub(n, &pd_host_rules);
		return false;
	}
	c->host_charged = n;
	return true;
}

void pd_txn_host_release(unsigned int rules)
{
	atomic_sub(rules, &pd_host_rules);
}

struct pd_txn {
	u32		portid;		/* the batch's socket; 0 for a lone request */
	bool		failed;		/* a command of the batch failed */
	bool		out_of_memory;	/* one failed so: the journal is gone */
	long		delta;		/* published rules after commit, minus now */
	long		udp6_delta;	/* the same for UDP rules that IPv6 can match */
	long		udp_delta;	/* ... and for UDP rules */
	struct list_head journal;	/* struct pd_change, in command order */
	struct list_head blocks;	/* where the changes live */
	DECLARE_BITMAP(dirty, PD_NDIRTY);
};

/*
 * Changes come in blocks, not one allocation each: a batch of 65,536
 * adds would otherwise leave its short-lived records between its rules'
 * long-lived prefix classes in the same slabs, and those slabs half
 * empty once it commits, their free half charged to nobody.
 */
#define PD_BLOCK_CHANGES	63

struct pd_change_block {
	struct list_head node;
	unsigned int	used;
	struct pd_change changes[PD_BLOCK_CHANGES];
};

/* What a commit replaced, freed once no packet can still be reading it. */
struct pd_garbage {
	struct rcu_work	rwork;
	struct pd_table	*table;		/* the old root; its blocks are below or shared */
	struct list_head rules;
	unsigned int	nr_blocks;
	struct pd_block	*blocks[];
};

static void pd_garbage_free(struct work_struct *work)
{
	struct pd_garbage *g = container_of(to_rcu_work(work),
					    struct pd_garbage, rwork);
	struct pd_rule *rule, *tmp;
	unsigned int i;

	kfree(g->table);
	for (i = 0; i < g->nr_blocks; i++)
		pd_block_free(g->blocks[i]);
	list_for_each_entry_safe(rule, tmp, &g->rules, del_node) {
		list_del(&rule->del_node);
		pd_rule_free(rule);
		cond_resched();
	}
	kfree(g);
}

struct pd_txn *pd_txn_begin(u32 portid)
{
	struct pd_txn *txn = kzalloc(sizeof(*txn), PD_GFP);

	if (!txn)
		return NULL;
	txn->portid = portid;
	INIT_LIST_HEAD(&txn->journal);
	INIT_LIST_HEAD(&txn->blocks);
	return txn;
}

static void pd_txn_free(struct pd_txn *txn)
{
	struct pd_change_block *b, *tmp;

	list_for_each_entry_safe(b, tmp, &txn->blocks, node)
		kfree(b);
	kfree(txn);
}

static struct pd_change *pd_change_new(struct pd_txn *txn, enum pd_op op)
{
	struct pd_change_block *b;
	struct pd_change *c;

	b = list_empty(&txn->blocks) ? NULL :
	    list_last_entry(&txn->blocks, struct pd_change_block, node);
	if (!b || b->used == PD_BLOCK_CHANGES) {
		b = kmalloc_obj(*b, PD_GFP);
		if (!b)
			return NULL;
		b->used = 0;
		list_add_tail(&b->node, &txn->blocks);
	}
	c = &b->changes[b->used++];
	memset(c, 0, sizeof(*c));
	c->op = op;
	INIT_LIST_HEAD(&c->removed);
	list_add_tail(&c->node, &txn->journal);
	return c;
}

static void pd_change_remove(struct pd_txn *txn, struct pd_change *c,
			     struct pd_rule *rule, u8 reason)
{
	rule->staged_del = true;
	rule->staged_by = txn;
	rule->del_reason = reason;
	list_add_tail(&rule->del_node, &c->removed);
	c->nr_removed++;
	txn->delta--;
	txn->udp6_delta -= pd_rule_is_udp6(rule);
	txn->udp_delta -= pd_rule_is_udp(rule);
	pd_table_mark_dirty(txn->dirty, rule->key.proto, rule->key.port_min,
			    rule->key.port_max);
}

/* Take one command back. Dirty marks stay: a spare rebuild is harmless. */
static void pd_change_undo(struct pd_net *pn, struct pd_txn *txn,
			   struct pd_change *c)
{
	struct pd_change_block *b;
	struct pd_rule *rule, *tmp;

	list_for_each_entry_safe(rule, tmp, &c->removed, del_node) {
		rule->staged_del = false;
		if (!rule->staged_add)
			rule->staged_by = NULL;
		rule->del_reason = PORTDISPATCH_DEL_REASON_UNSPEC;
		list_del_init(&rule->del_node);
		txn->delta++;
		txn->udp6_delta += pd_rule_is_udp6(rule);
		txn->udp_delta += pd_rule_is_udp(rule);
	}
	if (c->added) {
		txn->delta--;
		txn->udp6_delta -= pd_rule_is_udp6(c->added);
		txn->udp_delta -= pd_rule_is_udp(c->added);
		pd_store_remove(&pn->store, c->added);
		pd_rule_free(c->added);
	}
	pd_txn_host_release(c->host_charged);
	list_del(&c->node);
	/*
	 * The last change taken back, as a refused command's is: reused. An
	 * unwind empties the last block before it reaches the ones before,
	 * whose changes stay where they are.
	 */
	b = list_last_entry(&txn->blocks, struct pd_change_block, node);
	if (b->used && c == &b->changes[b->used - 1])
		b->used--;
}

/*
 * An extended ack's message holds 79 characters, and 6.2+ warns when one
 * is cut: a message naming rules (IPv6 prefixes are long) uses the first
 * of its wordings that fits.
 */
#define PD_MSG_MAX	79

/*
 * Says @two about rules @a and @b if it fits, else @one about @c, else
 * @shortest about @c. With no @b, only the last two are tried.
 */
static void pd_err_rules(struct netlink_ext_ack *extack,
			 const char *two, const struct pd_key *a,
			 const struct pd_key *b, const char *one,
			 const char *shortest, const struct pd_key *c)
{
	char da[64], db[64], msg[192];

	if (b) {
		pd_key_format(a, da, sizeof(da));
		pd_key_format(b, db, sizeof(db));
		if (snprintf(msg, sizeof(msg), two, da, db) <= PD_MSG_MAX)
			goto out;
	}
	pd_key_format(c, da, sizeof(da));
	if (snprintf(msg, sizeof(msg), one, da) > PD_MSG_MAX)
		snprintf(msg, PD_MSG_MAX + 1, shortest, da);
out:
	NL_SET_ERR_MSG_FMT(extack, "%s", msg);
}

static bool pd_same_ports(const struct pd_key *a, const struct pd_key *b)
{
	return a->port_min == b->port_min && a->port_max == b->port_max;
}

/* A sibling is a rule with the same prefix; a live one may conflict. */
static bool pd_sibling_counts(const struct pd_rule *other,
			      const struct pd_key *key)
{
	return !other->staged_del && (other->key.families & key->families);
}

/* Takes @rule: on failure it is freed. */
int pd_txn_add(struct pd_net *pn, struct pd_txn *txn, struct pd_rule *rule,
	       bool replace, struct netlink_ext_ack *extack)
{
	const struct pd_key *key = &rule->key;
	unsigned int max = READ_ONCE(pd_max_rules);
	unsigned int replaced = 0;
	struct pd_rule *other;
	struct pd_change *c;
	int err;

	for (other = pd_store_first_sibling(&pn->store, key); other;
	     other = pd_store_next_sibling(other, key)) {
		if (!pd_sibling_counts(other, key))
			continue;
		if (replace && pd_same_ports(&other->key, key)) {
			replaced++;
			continue;
		}
		pd_err_rules(extack, "%s overlaps the rule %s", key,
			     &other->key, "it overlaps the rule %s",
			     "overlaps %s", &other->key);
		err = -EEXIST;
		goto free;
	}

	if ((long)pn->nr_rules + txn->delta + 1 - replaced > max) {
		NL_SET_ERR_MSG_FMT(extack,
				   "this namespace's table is full (max_rules=%u)",
				   max);
		err = -ENOSPC;
		goto free;
	}

	c = pd_change_new(txn, replace ? PD_OP_REPLACE : PD_OP_ADD);
	if (!c) {
		err = -ENOMEM;
		goto free;
	}
	/* A rule replacing one takes no room: the old one's is handed on. */
	if (!pd_host_charge(c, !replaced)) {
		NL_SET_ERR_MSG_FMT(extack,
				   "the host is at its limit of %u rules (max_rules_total)",
				   READ_ONCE(pd_max_rules_total));
		pd_change_undo(pn, txn, c);
		err = -ENOSPC;
		goto free;
	}

	for (other = pd_store_first_sibling(&pn->store, key);
	     other && replaced; other = pd_store_next_sibling(other, key)) {
		if (!pd_sibling_counts(other, key) ||
		    !pd_same_ports(&other->key, key))
			continue;
		/*
		 * The first rule replaced hands on its identity; the others
		 * (one per family, for a rule serving both) just leave.
		 */
		if (!c->nr_removed)
			rule->id = other->id;
		pd_change_remove(txn, c, other, PORTDISPATCH_DEL_REASON_REPLACED);
	}
	if (!c->nr_removed)
		rule->id = ++pn->next_id;

	rule->staged_add = true;
	rule->staged_by = txn;
	err = pd_store_insert(&pn->store, rule);
	if (err) {
		pd_change_undo(pn, txn, c);
		goto free;
	}
	c->added = rule;
	txn->delta++;
	txn->udp6_delta += pd_rule_is_udp6(rule);
	txn->udp_delta += pd_rule_is_udp(rule);
	pd_table_mark_dirty(txn->dirty, key->proto, key->port_min,
			    key->port_max);
	return 0;

free:
	pd_rule_free(rule);
	return err;
}

int pd_txn_del(struct pd_net *pn, struct pd_txn *txn, const struct pd_key *key,
	       struct netlink_ext_ack *extack)
{
	struct pd_rule *rule, *covering = NULL;
	struct pd_change *c = NULL;

	for (rule = pd_store_first_sibling(&pn->store, key); rule;
	     rule = pd_store_next_sibling(rule, key)) {
		if (!pd_sibling_counts(rule, key))
			continue;
		if (!pd_same_ports(&rule->key, key)) {
			covering = rule;
			continue;
		}
		if (!c) {
			c = pd_change_new(txn, PD_OP_DEL);
			if (!c)
				return -ENOMEM;
		}
		pd_change_remove(txn, c, rule, PORTDISPATCH_DEL_REASON_REQUEST);
	}
	if (c)
		return 0;

	/* The user knows what they typed: keep the rule that covers it. */
	if (covering)
		pd_err_rules(extack, "no rule %s; %s covers it", key,
			     &covering->key, "no such rule; %s covers it",
			     "%s covers it", &covering->key);
	else
		pd_err_rules(extack, NULL, NULL, NULL, "no rule %s",
			     "no such rule: %s", key);
	return -ENOENT;
}

int pd_txn_flush(struct pd_net *pn, struct pd_txn *txn)
{
	struct pd_change *c = pd_change_new(txn, PD_OP_FLUSH);
	struct pd_rule *rule;
	int proto;

	if (!c)
		return -ENOMEM;
	for (proto = 0; proto < PD_NPROTO; proto++) {
		for (rule = pd_store_seek(&pn->store, proto, 0); rule;
		     rule = pd_store_next(rule)) {
			if (!rule->staged_del)
				pd_change_remove(txn, c, rule,
						 PORTDISPATCH_DEL_REASON_REQUEST);
			cond_resched();
		}
	}
	return 0;
}

/*
 * A rule whose socket closed leaves; of a group, only the sockets that
 * closed do, unless none is left: the members left replace it.
 */
int pd_txn_reap(struct pd_net *pn, struct pd_txn *txn, struct pd_rule *rule)
{
	struct pd_change *c;
	struct pd_rule *rest;

	if (pd_rule_group(rule)) {
		rest = pd_rule_without_closed(rule);
		if (IS_ERR(rest))
			return PTR_ERR(rest);
		if (rest)
			return pd_txn_add(pn, txn, rest, true, NULL);
	}
	c = pd_change_new(txn, PD_OP_DEL);
	if (!c)
		return -ENOMEM;
	pd_change_remove(txn, c, rule, PORTDISPATCH_DEL_REASON_SOCKET_CLOSED);
	return 0;
}

/* Every staged change undone; the transaction itself stays. */
static void pd_txn_unwind(struct pd_net *pn, struct pd_txn *txn)
{
	struct pd_change *c, *tmp;

	list_for_each_entry_safe_reverse(c, tmp, &txn->journal, node) {
		pd_change_undo(pn, txn, c);
		cond_resched();
	}
}

void pd_txn_abort(struct pd_net *pn, struct pd_txn *txn)
{
	pd_txn_unwind(pn, txn);
	pd_txn_free(txn);
}

/* And each member of a group those of the member with its target. */
static void pd_group_hand_over_stats(struct pd_group *g,
				     const struct pd_group *old)
{
	unsigned int i, j;

	for (i = 0; i < g->size; i++) {
		for (j = 0; j < old->size; j++) {
			if (!pd_target_same(&g->member[i].target,
					    &old->member[j].target))
				continue;
			pd_counters_put(g->member[i].counters);
			g->member[i].counters =
				pd_counters_get(old->member[j].counters);
			break;
		}
	}
}

/*
 * A replacing rule carries on the counters of the rule it replaces. Done
 * before the new rule is published, while no packet can reach its own
 * counters.
 */
static void pd_txn_hand_over_stats(struct pd_txn *txn)
{
	struct pd_change *c;

	list_for_each_entry(c, &txn->journal, node) {
		struct pd_rule *old;

		if (c->op != PD_OP_REPLACE || !c->nr_removed)
			continue;
		old = list_first_entry(&c->removed, struct pd_rule, del_node);
		pd_counters_put(c->added->counters);
		c->added->counters = pd_counters_get(old->counters);
		if (pd_rule_group(c->added) && pd_rule_group(old))
			pd_group_hand_over_stats(pd_rule_group(c->added),
						 pd_rule_group(old));
	}
}

/* After the publication: settle the store, announce, collect garbage. */
static void pd_txn_finish(struct pd_net *pn, struct pd_txn *txn,
			  struct pd_garbage *g)
{
	struct pd_change *c, *tmp;
	bool udp_left = false;
	struct pd_rule *rule;

	list_for_each_entry_safe(c, tmp, &txn->journal, node) {
		if (c->added) {
			c->added->staged_add = false;
			c->added->staged_by = NULL;
			pn->nr_rules++;
			if (pd_rule_is_socket(c->added))
				list_add_tail(&c->added->sock_node,
					      &pn->sock_rules);
		}

		pd_nl_notify(pn, c);

		list_for_each_entry(rule, &c->removed, del_node) {
			pd_store_remove(&pn->store, rule);
			list_del_init(&rule->sock_node);
			pn->nr_rules--;
			pd_rule_retire(rule, c->op == PD_OP_REPLACE ?
					     c->added : NULL);
			udp_left |= pd_rule_is_udp(rule);
		}
		/* The host's count: now it holds exactly the published rules. */
		pd_txn_host_release(c->nr_removed + c->host_charged -
				    !!c->added);
		list_splice_tail_init(&c->removed, &g->rules);
		list_del(&c->node);
		cond_resched();
	}
	if (udp_left)
		pd_replies_forget(pn);
}

/*
 * A transaction of one change to one rule is tried in place first (see
 * pd_table_patch()): a lone add beside 65,536 prefixes on its port then
 * costs what it costs on an empty port, instead of a rebuild of them all.
 */
static bool pd_txn_patch(struct pd_txn *txn, struct pd_table *table)
{
	struct pd_rule *del = NULL;
	struct pd_change *c;

	if (!table || !list_is_singular(&txn->journal))
		return false;
	c = list_first_entry(&txn->journal, struct pd_change, node);
	if (c->nr_removed > 1 || (!c->added && !c->nr_removed))
		return false;
	if (c->nr_removed)
		del = list_first_entry(&c->removed, struct pd_rule, del_node);
	return !pd_table_patch(table, c->added, del);
}

int pd_txn_commit(struct pd_net *pn, struct pd_txn *txn,
		  struct netlink_ext_ack *extack)
{
	struct pd_table *old, *table;
	unsigned int udp6_rules, udp_rules;
	struct pd_garbage *g;
	int err;

	if (txn->failed) {
		if (txn->out_of_memory)
			NL_SET_ERR_MSG(extack,
				       "a command of the batch ran out of memory, so none was applied");
		else
			NL_SET_ERR_MSG(extack,
				       "a command of the batch failed, so none was applied");
		err = txn->out_of_memory ? -ENOMEM : -EINVAL;
		pd_txn_abort(pn, txn);
		return err;
	}
	if (list_empty(&txn->journal)) {
		pd_txn_free(txn);
		return 0;
	}

	old = rcu_dereference_protected(pn->dp->table,
					lockdep_is_held(&pn->lock));
	g = kzalloc(struct_size(g, blocks, bitmap_weight(txn->dirty, PD_NDIRTY)),
		    PD_GFP);
	if (!g) {
		err = -ENOMEM;
		goto abort;
	}

	/*
	 * Counters are shared by reference: should the commit fail after
	 * this, the new rule goes, and with it only its reference.
	 */
	pd_txn_hand_over_stats(txn);
	/* Set before a table that needs it, cleared after the last one. */
	udp6_rules = pn->udp6_rules + txn->udp6_delta;
	if (udp6_rules)
		WRITE_ONCE(pn->dp->reassemble6, true);
	/*
	 * A UDP rule's flows need their table and hooks before it is seen;
	 * the last UDP rule's leaving starts the reply hooks' linger, also
	 * when the change is patched in place.
	 */
	udp_rules = pn->udp_rules + txn->udp_delta;
	if (udp_rules && pd_replies_prepare(pn)) {
		NL_SET_ERR_MSG(extack, "out of memory for the table of UDP flows");
		err = -ENOMEM;
		goto unflag;
	}
	err = pd_attach_update(pn, !!old, udp_rules);
	if (err)
		goto unhook;

	if (pd_txn_patch(txn, old))
		goto published;

	table = pd_table_rebuild(&pn->store, txn, old, txn->dirty, g->blocks,
				 &g->nr_blocks);
	if (IS_ERR(table)) {
		err = PTR_ERR(table);
		goto unflag;
	}
	if (pd_table_empty(table)) {
		kfree(table);
		table = NULL;
	}

	/* Only registering can fail, and only a table needs it. */
	err = pd_attach_update(pn, !!table, udp_rules);
	if (err) {
		pd_table_discard(table, txn->dirty);
		goto unhook;
	}
	rcu_assign_pointer(pn->dp->table, table);
	g->table = old;

published:
	pn->udp6_rules = udp6_rules;
	pn->udp_rules = udp_rules;
	if (!udp6_rules)
		WRITE_ONCE(pn->dp->reassemble6, false);
	INIT_LIST_HEAD(&g->rules);
	pd_txn_finish(pn, txn, g);
	pn->generation++;
	INIT_RCU_WORK(&g->rwork, pd_garbage_free);
	queue_rcu_work(pd_wq, &g->rwork);
	pd_txn_free(txn);
	pd_reaper_arm(pn);
	return 0;

unhook:
	NL_SET_ERR_MSG(extack, "could not register the netfilter hooks");
	/* Hooks this commit registered for nothing go with the linger. */
	pd_attach_update(pn, !!old, pn->udp_rules);
unflag:
	if (!pn->udp6_rules)
		WRITE_ONCE(pn->dp->reassemble6, false);
	kfree(g);
abort:
	if (err == -ENOMEM)
		NL_SET_ERR_MSG(extack, "out of memory while compiling the table");
	pd_txn_abort(pn, txn);
	return err;
}

/*
 * An open batch keeps every other writer of the namespace out, so one
 * whose owner stops talking is dropped; the owner learns it from its next
 * request, which would otherwise apply alone what was meant for the batch.
 * Each owner is remembered until it ends the batch itself or goes: a
 * later batch, of another socket, dropped in turn, does not erase it.
 */
struct pd_dropped {
	struct list_head node;
	u32		portid;
	unsigned int	ms;		/* the idle time it was dropped after */
};

static struct pd_dropped *pd_dropped_find(struct pd_net *pn, u32 portid)
{
	struct pd_dropped *d;

	list_for_each_entry(d, &pn->dropped, node)
		if (d->portid == portid)
			return d;
	return NULL;
}

static void pd_dropped_forget(struct pd_dropped *d)
{
	list_del(&d->node);
	kfree(d);
}

/* The namespace's end. */
void pd_batch_forget_dropped(struct pd_net *pn)
{
	struct pd_dropped *d, *tmp;

	list_for_each_entry_safe(d, tmp, &pn->dropped, node)
		pd_dropped_forget(d);
}

static int pd_batch_check_dropped(struct pd_net *pn, u32 portid, bool ends,
				  struct netlink_ext_ack *extack)
{
	struct pd_dropped *d = pd_dropped_find(pn, portid);

	if (!d)
		return 0;
	NL_SET_ERR_MSG_FMT(extack,
			   "the batch was dropped after %u ms idle: nothing in it was applied",
			   d->ms);
	/*
	 * Every command the owner still sends for the batch is refused, not
	 * applied alone, until it ends the batch itself.
	 */
	if (ends)
		pd_dropped_forget(d);
	return -ETIMEDOUT;
}

/* The owner spoke: the batch may idle for batch_idle_ms from now. */
static void pd_batch_touch(struct pd_net *pn)
{
	unsigned int ms = READ_ONCE(pd_batch_idle_ms);
	unsigned long idle = msecs_to_jiffies(ms);

	if (!ms)
		return;
	pn->batch_deadline = jiffies + idle;
	mod_delayed_work(pd_wq, &pn->batch_idle, idle);
}

void pd_batch_idle_work(struct work_struct *work)
{
	struct pd_net *pn = container_of(to_delayed_work(work), struct pd_net,
					 batch_idle);
	struct mem_cgroup *old_memcg;
	struct pd_dropped *d;

	mutex_lock(&pn->lock);
	if (!pn->batch || pn->dying)
		goto out;
	/* The owner spoke while this work was waiting for the lock. */
	if (time_before(jiffies, pn->batch_deadline)) {
		mod_delayed_work(pd_wq, &pn->batch_idle,
				 pn->batch_deadline - jiffies);
		goto out;
	}
	old_memcg = set_active_memcg(pn->memcg);
	d = kmalloc_obj(*d, PD_GFP);
	set_active_memcg(old_memcg);
	/* Without a way to tell the owner, the batch must wait. */
	if (!d) {
		mod_delayed_work(pd_wq, &pn->batch_idle, HZ);
		goto out;
	}
	d->portid = pn->batch->portid;
	d->ms = READ_ONCE(pd_batch_idle_ms);
	pd_batch_end(pn, d->portid, false, NULL);
	list_add(&d->node, &pn->dropped);
out:
	mutex_unlock(&pn->lock);
}

struct pd_txn *pd_txn_get(struct pd_net *pn, u32 portid,
			  struct netlink_ext_ack *extack)
{
	struct pd_txn *txn;
	int err;

	pd_reaper_bill_current(pn);
	err = pd_batch_check_dropped(pn, portid, false, extack);
	if (err)
		return ERR_PTR(err);
	if (pn->batch) {
		if (pn->batch->portid == portid) {
			pd_batch_touch(pn);
			if (!pn->batch->out_of_memory)
				return pn->batch;
			NL_SET_ERR_MSG(extack,
				       "an earlier command of this batch ran out of memory");
			return ERR_PTR(-ENOMEM);
		}
		NL_SET_ERR_MSG_FMT(extack,
				   "a batch of netlink socket %u is in progress",
				   pn->batch->portid);
		return ERR_PTR(-EBUSY);
	}
	txn = pd_txn_begin(0);
	return txn ?: ERR_PTR(-ENOMEM);
}

/*
 * A command of the batch was refused: the batch can no longer commit. A
 * refusal for memory also gives back what the batch staged, at once: its
 * owner's cgroup is at its limit, and the batch will never apply.
 */
static void pd_batch_fail(struct pd_net *pn, struct pd_txn *txn, int err)
{
	txn->failed = true;
	if (err == -ENOMEM && !txn->out_of_memory) {
		txn->out_of_memory = true;
		pd_txn_unwind(pn, txn);
	}
}

void pd_batch_refused(struct pd_net *pn, u32 portid, int err)
{
	if (pn->batch && pn->batch->portid == portid) {
		pd_batch_touch(pn);
		pd_batch_fail(pn, pn->batch, err);
	}
}

int pd_txn_put(struct pd_net *pn, struct pd_txn *txn, int err,
	       struct netlink_ext_ack *extack)
{
	if (txn == pn->batch) {
		if (err)
			pd_batch_fail(pn, txn, err);
		return err;
	}
	if (err) {
		pd_txn_abort(pn, txn);
		return err;
	}
	return pd_txn_commit(pn, txn, extack);
}

int pd_batch_begin(struct pd_net *pn, u32 portid,
		   struct netlink_ext_ack *extack)
{
	int err = pd_batch_check_dropped(pn, portid, true, extack);

	if (err)
		return err;
	if (pn->batch) {
		if (pn->batch->portid == portid)
			NL_SET_ERR_MSG(extack, "this socket already has a batch open");
		else
			NL_SET_ERR_MSG_FMT(extack,
					   "a batch of netlink socket %u is in progress",
					   pn->batch->portid);
		return -EBUSY;
	}
	pn->batch = pd_txn_begin(portid);
	if (!pn->batch)
		return -ENOMEM;
	pd_batch_touch(pn);
	return 0;
}

int pd_batch_end(struct pd_net *pn, u32 portid, bool commit,
		 struct netlink_ext_ack *extack)
{
	struct pd_txn *txn = pn->batch;
	int err;

	err = pd_batch_check_dropped(pn, portid, true, extack);
	if (err)
		return err;
	if (!txn || txn->portid != portid) {
		NL_SET_ERR_MSG(extack, "this socket has no batch open");
		return -EINVAL;
	}
	pn->batch = NULL;
	/* A work already running finds no batch, or a later one. */
	cancel_delayed_work(&pn->batch_idle);
	if (commit)
		err = pd_txn_commit(pn, txn, extack);
	else
		pd_txn_abort(pn, txn);
	/* Rules whose removal the batch held are the reaper's again. */
	pd_reaper_kick(pn);
	return err;
}

/* The socket that owned a batch is gone: drop the batch, if it had one. */
void pd_batch_release(struct pd_net *pn, u32 portid)
{
	struct pd_dropped *d = pd_dropped_find(pn, portid);

	if (d)
		pd_dropped_forget(d);
	if (pn->batch && pn->batch->portid == portid)
		pd_batch_end(pn, portid, false, NULL);
}
