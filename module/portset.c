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

static const struct pd_entry *pd_group_find(const struct pd_portset *set,
					    const struct pd_group *g,
					    const union pd_addr *addr,
					    u8 family)
{
	u32 i, slot;

	if (!g->mask) {
		for (i = g->start; i < g->end; i++)
			if (pd_entry_is(&set->entries[i], addr, family))
				return &set->entries[i];
		return NULL;
	}

	for (i = pd_addr_hash(addr, family) & g->mask; (slot = g->slots[i]);
	     i = (i + 1) & g->mask)
		if (pd_entry_is(&set->entries[slot - 1], addr, family))
			return &set->entries[slot - 1];
	return NULL;
}

struct pd_rule *pd_portset_match_prefix(const struct pd_portset *set,
					u8 family, const union pd_addr *daddr)
{
	unsigned int f = family == AF_INET6;
	const struct pd_group *g = set->groups + (f ? set->nr_groups[0] : 0);
	const struct pd_group *end = g + set->nr_groups[f];
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
		e = pd_group_find(set, g, &masked, family);
		if (e)
			return e->rule;
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

static int pd_group_index(struct pd_portset *set, struct pd_group *g,
			  u8 family)
{
	u32 n = g->end - g->start, i, slot;

	if (n < PD_HASH_MIN)
		return 0;
	/* At most half full: probes stay short. */
	g->mask = roundup_pow_of_two(2 * n) - 1;
	g->slots = kvcalloc(g->mask + 1, sizeof(*g->slots), GFP_KERNEL_ACCOUNT);
	if (!g->slots)
		return -ENOMEM;
	for (i = g->start; i < g->end; i++) {
		slot = pd_addr_hash(&set->entries[i].addr, family) & g->mask;
		while (g->slots[slot])
			slot = (slot + 1) & g->mask;
		g->slots[slot] = i + 1;
	}
	return 0;
}

/* Groups for entries[start, end) of one family, from groups[first]. */
static int pd_make_groups(struct pd_portset *set, u16 first, u32 start,
			  u32 end, u8 family)
{
	struct pd_group *g = NULL;
	u16 n = 0, k;
	u32 i;
	int err;

	for (i = start; i < end; i++) {
		u8 plen = set->entries[i].rule->key.plen;

		if (!g || plen != g->plen) {
			g = &set->groups[first + n++];
			g->start = i;
			g->plen = plen;
		}
		g->end = i + 1;
	}
	for (k = 0; k < n; k++) {
		err = pd_group_index(set, &set->groups[first + k], family);
		if (err)
			return err;
	}
	return 0;
}

static void pd_portset_free(struct pd_portset *set)
{
	unsigned int i;

	for (i = 0; i < set->nr_groups[0] + set->nr_groups[1]; i++)
		kvfree(set->groups[i].slots);
	kvfree(set->entries);
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
	entries = kvmalloc_array(v4 + v6, sizeof(*entries),
				 GFP_KERNEL_ACCOUNT);
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
	set = kvzalloc(struct_size(set, groups, g4 + g6), GFP_KERNEL_ACCOUNT);
	if (!set) {
		kvfree(entries);
		return NULL;
	}
	set->entries = entries;
	set->nr_groups[0] = g4;
	set->nr_groups[1] = g6;
	if (pd_make_groups(set, 0, 0, v4, AF_INET) ||
	    pd_make_groups(set, g4, v4, v4 + v6, AF_INET6)) {
		pd_portset_free(set);
		return NULL;
	}
	/* Longest first: a rule without a prefix ends its family's entries. */
	if (v4 && !entries[v4 - 1].rule->key.plen)
		set->any[0] = entries[v4 - 1].rule;
	if (v6 && !entries[v4 + v6 - 1].rule->key.plen)
		set->any[1] = entries[v4 + v6 - 1].rule;
	refcount_set(&set->ref, refs);
	return set;
}

void pd_portset_put(struct pd_portset *set)
{
	if (refcount_dec_and_test(&set->ref))
		pd_portset_free(set);
}
