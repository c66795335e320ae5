// SPDX-License-Identifier: GPL-2.0
/* Matching in the compiled table, and compiling it from the store. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/err.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <net/ipv6.h>

#include "store.h"
#include "table.h"

static u32 pd_mask4(u8 plen)
{
	return plen ? ~0U << (32 - plen) : 0;
}

/* Entries e[0..n) share one prefix length and are sorted by address. */
static const struct pd_entry *pd_search_v4(const struct pd_entry *e, u32 n,
					   __be32 daddr)
{
	u32 want = ntohl(daddr) & pd_mask4(e->plen);
	u32 lo = 0, hi = n;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;
		u32 have = ntohl(e[mid].addr.v4);

		if (have == want)
			return &e[mid];
		if (have < want)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const struct pd_entry *pd_search_v6(const struct pd_entry *e, u32 n,
					   const struct in6_addr *daddr)
{
	struct in6_addr want;
	u32 lo = 0, hi = n;

	ipv6_addr_prefix(&want, daddr, e->plen);
	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;
		int cmp = memcmp(&e[mid].addr.v6, &want, sizeof(want));

		if (!cmp)
			return &e[mid];
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * Longest prefix first: one binary search per distinct prefix length
 * present on this port, so the cost follows the number of lengths in use,
 * not the number of rules.
 */
struct pd_rule *pd_portset_match(const struct pd_portset *set, u8 family,
				 const union pd_addr *daddr)
{
	const struct pd_entry *e = set->entries;
	u32 i = 0, end = set->nr_v4;

	if (family == AF_INET6) {
		i = set->nr_v4;
		end = i + set->nr_v6;
	}

	while (i < end) {
		u32 group_end = e[i].group_end;
		const struct pd_entry *hit;

		if (family == AF_INET)
			hit = pd_search_v4(&e[i], group_end - i, daddr->v4);
		else
			hit = pd_search_v6(&e[i], group_end - i, &daddr->v6);
		if (hit)
			return hit->rule;
		i = group_end;
	}
	return NULL;
}

void pd_table_mark_dirty(unsigned long *dirty, u8 proto, u16 lo, u16 hi)
{
	unsigned int first = proto * PD_NBLOCKS + (lo >> PD_BLOCK_SHIFT);
	unsigned int last = proto * PD_NBLOCKS + (hi >> PD_BLOCK_SHIFT);

	bitmap_set(dirty, first, last - first + 1);
}

static int pd_entry_cmp_v4(const void *a, const void *b)
{
	const struct pd_entry *x = a, *y = b;
	u32 ax = ntohl(x->addr.v4), ay = ntohl(y->addr.v4);

	if (x->plen != y->plen)
		return x->plen > y->plen ? -1 : 1;
	return ax < ay ? -1 : ax > ay;
}

static int pd_entry_cmp_v6(const void *a, const void *b)
{
	const struct pd_entry *x = a, *y = b;

	if (x->plen != y->plen)
		return x->plen > y->plen ? -1 : 1;
	return memcmp(&x->addr.v6, &y->addr.v6, sizeof(x->addr.v6));
}

static void pd_entries_group(struct pd_entry *e, u32 start, u32 end)
{
	u32 i;

	for (i = end; i-- > start;) {
		if (i + 1 < end && e[i + 1].plen == e[i].plen)
			e[i].group_end = e[i + 1].group_end;
		else
			e[i].group_end = i + 1;
	}
}

static void pd_entry_set(struct pd_entry *e, struct pd_rule *rule)
{
	e->rule = rule;
	e->plen = rule->key.plen;
	e->addr = rule->key.addr;
}

/* The port set of the rules on @active, for @nr_blocks blocks to share. */
static struct pd_portset *pd_portset_build(struct list_head *active,
					   unsigned int nr_blocks)
{
	struct pd_portset *set;
	struct pd_rule *rule;
	u32 v4 = 0, v6 = 0;

	list_for_each_entry(rule, active, build_node) {
		v4 += !!(rule->key.families & PD_FAM_V4);
		v6 += !!(rule->key.families & PD_FAM_V6);
	}

	set = kvzalloc(struct_size(set, entries, v4 + v6), GFP_KERNEL);
	if (!set)
		return NULL;
	set->nr_v4 = v4;
	set->nr_v6 = v6;

	v6 = v4;
	v4 = 0;
	list_for_each_entry(rule, active, build_node) {
		if (rule->key.families & PD_FAM_V4)
			pd_entry_set(&set->entries[v4++], rule);
		if (rule->key.families & PD_FAM_V6)
			pd_entry_set(&set->entries[v6++], rule);
	}

	sort(set->entries, set->nr_v4, sizeof(set->entries[0]),
	     pd_entry_cmp_v4, NULL);
	sort(set->entries + set->nr_v4, set->nr_v6, sizeof(set->entries[0]),
	     pd_entry_cmp_v6, NULL);
	pd_entries_group(set->entries, 0, set->nr_v4);
	pd_entries_group(set->entries, set->nr_v4, set->nr_v4 + set->nr_v6);

	refcount_set(&set->ref, nr_blocks);
	return set;
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

static bool pd_rule_live_after_commit(const struct pd_rule *rule)
{
	return !rule->staged_del;
}

/*
 * Rebuild blocks [b0, b1] of @proto with a sweep over the ports: the rules
 * covering the run start and stop at their edges, and every stretch of
 * ports between two edges gets one port set for the rules active there.
 */
static int pd_rebuild_run(struct pd_store *store, struct pd_table *table,
			  u8 proto, unsigned int b0, unsigned int b1)
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
		table->block[proto][b] = kzalloc(sizeof(*table->block[proto][b]),
						 GFP_KERNEL);
		if (!table->block[proto][b])
			return -ENOMEM;
	}

	for (rule = pd_store_first_in(store, proto, lo, hi); rule;
	     rule = pd_store_next_in(rule, lo, hi))
		nr += pd_rule_live_after_commit(rule);
	if (!nr)
		goto prune;

	edges = kvmalloc_array(2 * nr, sizeof(*edges), GFP_KERNEL);
	if (!edges)
		return -ENOMEM;
	for (rule = pd_store_first_in(store, proto, lo, hi); rule;
	     rule = pd_store_next_in(rule, lo, hi)) {
		if (!pd_rule_live_after_commit(rule))
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
 * will be after the commit. The blocks of @old it no longer uses are put
 * in @replaced, to be freed once no reader can see @old.
 */
struct pd_table *pd_table_rebuild(struct pd_store *store,
				  const struct pd_table *old,
				  const unsigned long *dirty,
				  struct pd_block **replaced,
				  unsigned int *nr_replaced)
{
	struct pd_table *table;
	unsigned int bit, end, stop;
	int err = 0;

	if (old)
		table = kmemdup(old, sizeof(*table), GFP_KERNEL);
	else
		table = kzalloc(sizeof(*table), GFP_KERNEL);
	if (!table)
		return ERR_PTR(-ENOMEM);

	for_each_set_bit(bit, dirty, PD_NDIRTY)
		table->block[bit / PD_NBLOCKS][bit % PD_NBLOCKS] = NULL;

	for (bit = find_first_bit(dirty, PD_NDIRTY); bit < PD_NDIRTY;
	     bit = find_next_bit(dirty, PD_NDIRTY, stop)) {
		unsigned int proto = bit / PD_NBLOCKS;

		end = find_next_zero_bit(dirty, PD_NDIRTY, bit);
		stop = min(end, (proto + 1) * PD_NBLOCKS);
		err = pd_rebuild_run(store, table, proto, bit % PD_NBLOCKS,
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
		if (refcount_dec_and_test(&set->ref))
			kvfree(set);
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
