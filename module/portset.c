// SPDX-License-Identifier: GPL-2.0
/* Port sets: building them, matching in them. See portset.h. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/inetdevice.h>
#include <linux/jhash.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <net/ipv6.h>

#include "gfp.h"
#include "portset.h"
#include "rule.h"

/* Groups this large get a hash index; smaller ones are scanned. */
#define PD_HASH_MIN	8

/*
 * Keyed, so that whoever writes rules cannot line their addresses up in
 * one run of slots and make every packet to the namespace probe them all.
 * IPv4: multiply-shift with a random odd multiplier, a universal family
 * for the low bits of the product's upper half, in three instructions.
 */
static struct {
	u64	mult;
	u32	seed;
} pd_hash_key __read_mostly;

/* Module init: before any set is built. */
void pd_portset_init(void)
{
	get_random_bytes(&pd_hash_key, sizeof(pd_hash_key));
	pd_hash_key.mult |= 1;
}

static u32 pd_addr_hash(const union pd_addr *addr, u8 family)
{
	if (family == AF_INET)
		return ((u64)(__force u32)addr->v4 * pd_hash_key.mult) >> 32;
	return jhash2((const u32 *)&addr->v6, 4, pd_hash_key.seed);
}

static bool pd_entry_is(const struct pd_entry *e, const union pd_addr *addr,
			u8 family)
{
	if (family == AF_INET)
		return e->addr.v4 == addr->v4;
	return ipv6_addr_equal(&e->addr.v6, &addr->v6);
}

static const struct pd_entry *pd_group_find(const struct pd_len_group *g,
					    const union pd_addr *addr,
					    u8 family)
{
	u32 i, slot;

	if (!g->mask) {
		for (i = 0; i < g->nr; i++)
			if (pd_entry_is(&g->entries[i], addr, family))
				return &g->entries[i];
		return NULL;
	}

	/* The slot's entry is written before the slot: its address orders. */
	for (i = pd_addr_hash(addr, family) & g->mask;
	     (slot = READ_ONCE(g->slots[i])) != PD_SLOT_EMPTY;
	     i = (i + 1) & g->mask) {
		if (slot != PD_SLOT_GONE &&
		    pd_entry_is(&g->entries[slot - 1], addr, family))
			return &g->entries[slot - 1];
	}
	return NULL;
}

struct pd_rule *pd_portset_match_prefix(const struct pd_portset *set,
					u8 family, const union pd_addr *daddr)
{
	unsigned int f = family == AF_INET6;
	const struct pd_len_group *g = set->groups + (f ? set->nr_groups[0] : 0);
	const struct pd_len_group *end = g + set->nr_groups[f];
	union pd_addr masked;

	/* The group without a prefix, last, matches every address. */
	if (set->any[f])
		end--;
	for (; g < end; g++) {
		const struct pd_entry *e;

		if (family == AF_INET)
			masked.v4 = daddr->v4 & inet_make_mask(g->plen);
		else
			ipv6_addr_prefix(&masked.v6, &daddr->v6, g->plen);
		e = pd_group_find(g, &masked, family);
		if (e)
			return READ_ONCE(e->rule);
	}
	return set->any[f];
}

/* Longest prefix first; by address within a length, so builds repeat. */
static int pd_entry_cmp_v4(const void *a, const void *b)
{
	const struct pd_entry *x = a, *y = b;
	u32 ax = ntohl(x->addr.v4), ay = ntohl(y->addr.v4);

	if (x->rule->key.plen != y->rule->key.plen)
		return x->rule->key.plen > y->rule->key.plen ? -1 : 1;
	return ax < ay ? -1 : ax > ay;
}

static int pd_entry_cmp_v6(const void *a, const void *b)
{
	const struct pd_entry *x = a, *y = b;

	if (x->rule->key.plen != y->rule->key.plen)
		return x->rule->key.plen > y->rule->key.plen ? -1 : 1;
	return memcmp(&x->addr.v6, &y->addr.v6, sizeof(x->addr.v6));
}

static u16 pd_count_groups(const struct pd_entry *e, u32 start, u32 end)
{
	u16 n = 0;
	u32 i;

	for (i = start; i < end; i++)
		if (i == start || e[i].rule->key.plen != e[i - 1].rule->key.plen)
			n++;
	return n;
}

/* The first slot for @addr that holds no entry, removed ones' included. */
static u32 pd_group_free_slot(const struct pd_len_group *g,
			      const union pd_addr *addr, u8 family)
{
	u32 i = pd_addr_hash(addr, family) & g->mask;

	while (g->slots[i] != PD_SLOT_EMPTY && g->slots[i] != PD_SLOT_GONE)
		i = (i + 1) & g->mask;
	return i;
}

/*
 * A group of @n entries from @src, its own copy. A hashed one gets room
 * for half as many again, and twice as many slots as entries it can
 * hold, so that probes stay short until a rebuild, n lone additions later
 * at the earliest: in place, additions cost O(1) amortised.
 */
static int pd_group_init(struct pd_len_group *g, const struct pd_entry *src,
			 u32 n, u8 family)
{
	u32 i, slot;

	g->plen = src->rule->key.plen;
	g->nr = n;
	g->cap = n;
	if (n >= PD_HASH_MIN && g->plen)
		g->cap = n + n / 2;
	g->entries = kvmalloc_array(g->cap, sizeof(*g->entries), PD_GFP);
	if (!g->entries)
		return -ENOMEM;
	memcpy(g->entries, src, n * sizeof(*src));
	if (g->cap == n)
		return 0;

	g->live = n;
	g->mask = roundup_pow_of_two(2 * g->cap) - 1;
	g->slots = kvcalloc(g->mask + 1, sizeof(*g->slots), PD_GFP);
	if (!g->slots)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		slot = pd_group_free_slot(g, &g->entries[i].addr, family);
		g->slots[slot] = i + 1;
	}
	return 0;
}

/* Groups for entries[start, end) of one family, from groups[first]. */
static int pd_make_groups(struct pd_portset *set, const struct pd_entry *e,
			  u16 first, u32 start, u32 end, u8 family)
{
	u32 i, from = start;
	u16 n = 0;
	int err;

	for (i = start + 1; i <= end && start < end; i++) {
		if (i < end && e[i].rule->key.plen == e[from].rule->key.plen)
			continue;
		err = pd_group_init(&set->groups[first + n++], e + from,
				    i - from, family);
		if (err)
			return err;
		from = i;
	}
	return 0;
}

static void pd_portset_free(struct pd_portset *set)
{
	unsigned int i;

	for (i = 0; i < set->nr_groups[0] + set->nr_groups[1]; i++) {
		kvfree(set->groups[i].slots);
		kvfree(set->groups[i].entries);
	}
	kvfree(set);
}

struct pd_portset *pd_portset_build(struct list_head *active,
				    unsigned int refs)
{
	struct pd_entry *entries;
	struct pd_portset *set;
	struct pd_rule *rule;
	u32 v4 = 0, v6 = 0, i;
	u16 g4, g6;

	list_for_each_entry(rule, active, build_node) {
		v4 += !!(rule->key.families & PD_FAM_V4);
		v6 += !!(rule->key.families & PD_FAM_V6);
	}
	entries = kvmalloc_array(v4 + v6, sizeof(*entries), PD_GFP);
	if (!entries)
		return NULL;

	i = 0;
	list_for_each_entry(rule, active, build_node)
		if (rule->key.families & PD_FAM_V4)
			entries[i++] = (struct pd_entry){ rule->key.addr, rule };
	list_for_each_entry(rule, active, build_node)
		if (rule->key.families & PD_FAM_V6)
			entries[i++] = (struct pd_entry){ rule->key.addr, rule };
	sort(entries, v4, sizeof(*entries), pd_entry_cmp_v4, NULL);
	sort(entries + v4, v6, sizeof(*entries), pd_entry_cmp_v6, NULL);

	g4 = pd_count_groups(entries, 0, v4);
	g6 = pd_count_groups(entries, v4, v4 + v6);
	set = kvzalloc(struct_size(set, groups, g4 + g6), PD_GFP);
	if (!set)
		goto out;
	set->nr_groups[0] = g4;
	set->nr_groups[1] = g6;
	if (pd_make_groups(set, entries, 0, 0, v4, AF_INET) ||
	    pd_make_groups(set, entries, g4, v4, v4 + v6, AF_INET6)) {
		pd_portset_free(set);
		set = NULL;
		goto out;
	}
	/* Longest first: a rule without a prefix ends its family's entries. */
	if (v4 && !entries[v4 - 1].rule->key.plen)
		set->any[0] = entries[v4 - 1].rule;
	if (v6 && !entries[v4 + v6 - 1].rule->key.plen)
		set->any[1] = entries[v4 + v6 - 1].rule;
	refcount_set(&set->ref, refs);
out:
	kvfree(entries);
	return set;
}

/* The slot pointing to @addr's entry in hashed group @g, or NULL. */
static u32 *pd_group_slot_of(struct pd_len_group *g, const union pd_addr *addr,
			     u8 family)
{
	u32 i, slot;

	for (i = pd_addr_hash(addr, family) & g->mask;
	     (slot = g->slots[i]) != PD_SLOT_EMPTY; i = (i + 1) & g->mask)
		if (slot != PD_SLOT_GONE &&
		    pd_entry_is(&g->entries[slot - 1], addr, family))
			return &g->slots[i];
	return NULL;
}

/*
 * A lone change to one prefix rule, written into @set in place: @add
 * alone, @del alone, or both (a replace: the same key). Each is a single
 * store that a packet sees whole, whatever table it read the set from,
 * so that one change costs the same beside one rule or 65,536. -EAGAIN
 * when the set has no hashed group of that length, or no room: the
 * caller rebuilds it then, which also compacts what removals left.
 */
int pd_portset_patch(struct pd_portset *set, struct pd_rule *add,
		     struct pd_rule *del)
{
	const struct pd_key *key = add ? &add->key : &del->key;
	u8 family = key->families == PD_FAM_V4 ? AF_INET : AF_INET6;
	unsigned int f = family == AF_INET6;
	struct pd_len_group *g = set->groups + (f ? set->nr_groups[0] : 0);
	struct pd_len_group *end = g + set->nr_groups[f];
	u32 *slot;

	if (!key->plen)
		return -EAGAIN;
	while (g < end && g->plen != key->plen)
		g++;
	if (g == end || !g->mask)
		return -EAGAIN;

	slot = pd_group_slot_of(g, &key->addr, family);
	if (del && (!slot || g->entries[*slot - 1].rule != del))
		return -EAGAIN;
	if (add && del) {
		/* The new rule is whole before a packet can find it. */
		smp_store_release(&g->entries[*slot - 1].rule, add);
		return 0;
	}
	if (del) {
		if (g->live <= PD_HASH_MIN)
			return -EAGAIN;
		WRITE_ONCE(*slot, PD_SLOT_GONE);
		g->live--;
		return 0;
	}
	if (slot || g->nr == g->cap)
		return -EAGAIN;
	g->entries[g->nr] = (struct pd_entry){ key->addr, add };
	/* Entry, and rule, before the slot that makes them visible. */
	smp_store_release(&g->slots[pd_group_free_slot(g, &key->addr, family)],
			  g->nr + 1);
	g->nr++;
	g->live++;
	return 0;
}

void pd_portset_put(struct pd_portset *set)
{
	if (refcount_dec_and_test(&set->ref))
		pd_portset_free(set);
}
