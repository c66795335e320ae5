// SPDX-License-Identifier: GPL-2.0
/* Compiling the table from the store, block by block. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/err.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>

#include "compat.h"
#include "gfp.h"
#include "store.h"
#include "table.h"

void pd_table_mark_dirty(unsigned long *dirty, u8 proto, u16 lo, u16 hi)
{
	unsigned int first = proto * PD_NBLOCKS + (lo >> PD_BLOCK_SHIFT);
	unsigned int last = proto * PD_NBLOCKS + (hi >> PD_BLOCK_SHIFT);

	bitmap_set(dirty, first, last - first + 1);
}

/* Point ports [first, last] of @proto at one new set for @active. */
static int pd_fill(struct pd_table *table, u8 proto, u32 first, u32 last,
		   struct list_head *active)
{
	unsigned int b0 = first >> PD_BLOCK_SHIFT, b1 = last >> PD_BLOCK_SHIFT;
	struct pd_portset *set;
	u32 port;

	set = pd_portset_build(active, b1 - b0 + 1);
	if (!set)
		return -ENOMEM;
	for (port = first; port <= last; port++)
		table->block[proto][port >> PD_BLOCK_SHIFT]
			->set[port & (PD_BLOCK_PORTS - 1)] = set;
	return 0;
}

/* Where a rule's coverage of a run of ports begins or ends. */
struct pd_edge {
	u32		pos;	/* first port covered, or first port after */
	bool		start;
	struct pd_rule	*rule;
};

static int pd_edge_cmp(const void *a, const void *b)
{
	const struct pd_edge *x = a, *y = b;

	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/*
 * Rebuild blocks [b0, b1] of @proto with a sweep over the ports: the rules
 * covering the run start and stop at their edges, and every stretch of
 * ports between two edges gets one port set for the rules active there.
 */
static int pd_rebuild_run(struct pd_store *store, const struct pd_txn *txn,
			  struct pd_table *table, u8 proto, unsigned int b0,
			  unsigned int b1)
{
	u16 lo = b0 << PD_BLOCK_SHIFT;
	u16 hi = ((b1 + 1) << PD_BLOCK_SHIFT) - 1;
	struct pd_rule *rule, *tmp;
	struct pd_edge *edges;
	LIST_HEAD(active);
	u32 nr = 0, i = 0;
	unsigned int b;
	int err = 0;

	for (b = b0; b <= b1; b++) {
		table->block[proto][b] = kzalloc_obj(*table->block[proto][b],
						     PD_GFP);
		if (!table->block[proto][b])
			return -ENOMEM;
	}

	for (rule = pd_store_first_in(store, proto, lo, hi); rule;
	     rule = pd_store_next_in(rule, lo, hi)) {
		nr += pd_rule_live_after(rule, txn);
		cond_resched();
	}
	if (!nr)
		goto prune;

	edges = kvmalloc_array(2 * nr, sizeof(*edges), PD_GFP);
	if (!edges)
		return -ENOMEM;
	for (rule = pd_store_first_in(store, proto, lo, hi); rule;
	     rule = pd_store_next_in(rule, lo, hi)) {
		cond_resched();
		if (!pd_rule_live_after(rule, txn))
			continue;
		edges[i++] = (struct pd_edge){
			.pos = max(rule->key.port_min, lo),
			.start = true,
			.rule = rule,
		};
		edges[i++] = (struct pd_edge){
			.pos = min(rule->key.port_max, hi) + 1,
			.rule = rule,
		};
	}
	sort(edges, 2 * nr, sizeof(*edges), pd_edge_cmp, NULL);

	for (i = 0; i < 2 * nr;) {
		u32 pos = edges[i].pos;

		for (; i < 2 * nr && edges[i].pos == pos; i++) {
			if (edges[i].start)
				list_add_tail(&edges[i].rule->build_node, &active);
			else
				list_del_init(&edges[i].rule->build_node);
		}
		if (pos > hi || list_empty(&active))
			continue;
		err = pd_fill(table, proto, pos,
			      i < 2 * nr ? edges[i].pos - 1 : hi, &active);
		if (err)
			break;
		cond_resched();
	}
	list_for_each_entry_safe(rule, tmp, &active, build_node)
		list_del_init(&rule->build_node);
	kvfree(edges);
	if (err)
		return err;

prune:
	for (b = b0; b <= b1; b++) {
		struct pd_block *block = table->block[proto][b];

		if (!memchr_inv(block, 0, sizeof(*block))) {
			kfree(block);
			table->block[proto][b] = NULL;
		}
	}
	return 0;
}

/*
 * A new table: @old with the @dirty blocks rebuilt from the store as it
 * will be after @txn commits. The blocks of @old it no longer uses are put
 * in @replaced, to be freed once no reader can see @old.
 */
struct pd_table *pd_table_rebuild(struct pd_store *store,
				  const struct pd_txn *txn,
				  const struct pd_table *old,
				  const unsigned long *dirty,
				  struct pd_block **replaced,
				  unsigned int *nr_replaced)
{
	struct pd_table *table;
	unsigned int bit, end, stop;
	int err = 0;

	if (old)
		table = kmemdup(old, sizeof(*table), PD_GFP);
	else
		table = kzalloc(sizeof(*table), PD_GFP);
	if (!table)
		return ERR_PTR(-ENOMEM);

	for_each_set_bit(bit, dirty, PD_NDIRTY)
		table->block[bit / PD_NBLOCKS][bit % PD_NBLOCKS] = NULL;

	for (bit = find_first_bit(dirty, PD_NDIRTY); bit < PD_NDIRTY;
	     bit = find_next_bit(dirty, PD_NDIRTY, stop)) {
		unsigned int proto = bit / PD_NBLOCKS;

		end = find_next_zero_bit(dirty, PD_NDIRTY, bit);
		stop = min(end, (proto + 1) * PD_NBLOCKS);
		err = pd_rebuild_run(store, txn, table, proto, bit % PD_NBLOCKS,
				     (stop - 1) % PD_NBLOCKS);
		if (err)
			goto fail;
	}

	*nr_replaced = 0;
	for_each_set_bit(bit, dirty, PD_NDIRTY) {
		struct pd_block *block;

		block = old ? old->block[bit / PD_NBLOCKS][bit % PD_NBLOCKS] : NULL;
		if (block)
			replaced[(*nr_replaced)++] = block;
	}
	return table;

fail:
	pd_table_discard(table, dirty);
	return ERR_PTR(err);
}

/*
 * A lone change of one rule, made in the published table in place when
 * the port set it belongs in serves exactly the rule's ports: the set
 * then takes the rule or lets it go, and nothing else changes. -EAGAIN
 * when blocks must be rebuilt instead.
 */
int pd_table_patch(struct pd_table *table, struct pd_rule *add,
		   struct pd_rule *del)
{
	const struct pd_key *key = add ? &add->key : &del->key;
	struct pd_portset *set;
	u32 port;

	set = pd_table_port(table, key->proto, key->port_min);
	if (!set)
		return -EAGAIN;
	for (port = key->port_min + 1; port <= key->port_max; port++)
		if (pd_table_port(table, key->proto, port) != set)
			return -EAGAIN;
	/* A set serves one stretch of ports: its neighbours tell its ends. */
	if ((key->port_min > 1 &&
	     pd_table_port(table, key->proto, key->port_min - 1) == set) ||
	    (key->port_max < 65535 &&
	     pd_table_port(table, key->proto, key->port_max + 1) == set))
		return -EAGAIN;
	return pd_portset_patch(set, add, del);
}

/* Undo a rebuild that was never published: its dirty blocks are its own. */
void pd_table_discard(struct pd_table *table, const unsigned long *dirty)
{
	unsigned int bit;

	for_each_set_bit(bit, dirty, PD_NDIRTY)
		pd_block_free(table->block[bit / PD_NBLOCKS][bit % PD_NBLOCKS]);
	kfree(table);
}

bool pd_table_empty(const struct pd_table *table)
{
	return !memchr_inv(table, 0, sizeof(*table));
}

/* Drops the block's references; a set goes with its last block. */
void pd_block_free(struct pd_block *block)
{
	struct pd_portset *prev = NULL;
	unsigned int i;

	if (!block)
		return;

	for (i = 0; i < PD_BLOCK_PORTS; i++) {
		struct pd_portset *set = block->set[i];

		/* A set covers one stretch of ports: one run per block. */
		if (!set || set == prev)
			continue;
		prev = set;
		pd_portset_put(set);
	}
	kfree(block);
}

/* Everything, blocks included: for a table no other table shares. */
void pd_table_destroy(struct pd_table *table)
{
	unsigned int p, b;

	if (!table)
		return;
	for (p = 0; p < PD_NPROTO; p++)
		for (b = 0; b < PD_NBLOCKS; b++)
			pd_block_free(table->block[p][b]);
	kfree(table);
}
