// SPDX-License-Identifier: GPL-2.0
/* Per-rule counters: see counters.h. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/slab.h>

#include "counters.h"

DEFINE_PER_CPU_ALIGNED(struct pd_count_cache, pd_count_cache);

static struct kmem_cache *pd_counters_cache __read_mostly;

int pd_counters_init(void)
{
	unsigned int i;
	int cpu;

	for_each_possible_cpu(cpu) {
		struct pd_count_cache *cache = per_cpu_ptr(&pd_count_cache, cpu);

		for (i = 0; i < ARRAY_SIZE(cache->slot); i++)
			seqcount_init(&cache->slot[i].seq);
	}
	pd_counters_cache = KMEM_CACHE(pd_counters, SLAB_ACCOUNT);
	return pd_counters_cache ? 0 : -ENOMEM;
}

/* Module unload: no packet runs and no rule is left, only the slots. */
void pd_counters_exit(void)
{
	unsigned int i;
	int cpu;

	for_each_possible_cpu(cpu) {
		struct pd_count_cache *cache = per_cpu_ptr(&pd_count_cache, cpu);

		for (i = 0; i < ARRAY_SIZE(cache->slot); i++) {
			struct pd_count_slot *slot = &cache->slot[i];

			if (slot->owner)
				pd_counters_put(slot->owner);
			memset(slot->count, 0, sizeof(slot->count));
			slot->owner = NULL;
		}
	}
	kmem_cache_destroy(pd_counters_cache);
}

struct pd_counters *pd_counters_alloc(gfp_t gfp)
{
	struct pd_counters *c = kmem_cache_zalloc(pd_counters_cache, gfp);

	if (c)
		refcount_set(&c->ref, 1);
	return c;
}

void pd_counters_put(struct pd_counters *c)
{
	if (refcount_dec_and_test(&c->ref))
		kmem_cache_free(pd_counters_cache, c);
}

/*
 * The slot changes hands: what it counted for its previous owner moves to
 * that owner's totals. Packets only, as pd_count().
 */
void pd_counters_claim(struct pd_count_slot *slot, struct pd_counters *c)
{
	struct pd_counters *old = slot->owner;
	unsigned int i;

	pd_counters_get(c);
	/* The hook runs with bottom halves off: no other writer here. */
	raw_write_seqcount_begin(&slot->seq);
	for (i = 0; old && i < PD_NCOUNTS; i++)
		atomic64_add(slot->count[i], &old->total[i]);
	for (i = 0; i < PD_NCOUNTS; i++)
		WRITE_ONCE(slot->count[i], 0);
	WRITE_ONCE(slot->owner, c);
	raw_write_seqcount_end(&slot->seq);
	if (old)
		pd_counters_put(old);
}

static bool pd_totals_moved(struct pd_counters *c, const u64 *seen)
{
	unsigned int i;

	for (i = 0; i < PD_NCOUNTS; i++)
		if (atomic64_read(&c->total[i]) != seen[i])
			return true;
	return false;
}

/*
 * The totals plus what every CPU's slot holds for @c. A slot handing its
 * counts over while we look would have them counted twice or not at
 * all; it changes the totals, so the sum is taken again. Each sum is
 * then a value the counters really had, and successive reads never go
 * backwards. Under a storm of hand-overs, the eighth try stands.
 */
void pd_counters_read(struct pd_counters *c, u64 sum[PD_NCOUNTS])
{
	unsigned int h = hash_ptr(c, PD_COUNT_SLOT_BITS), tries = 0, i;
	u64 seen[PD_NCOUNTS];
	int cpu;

	do {
		for (i = 0; i < PD_NCOUNTS; i++) {
			seen[i] = atomic64_read(&c->total[i]);
			sum[i] = seen[i];
		}
		smp_rmb();	/* totals before slots: pairs with the seqcount */
		for_each_possible_cpu(cpu) {
			struct pd_count_slot *slot;
			unsigned long n[PD_NCOUNTS];
			unsigned int seq;
			bool mine;

			slot = &per_cpu_ptr(&pd_count_cache, cpu)->slot[h];
			do {
				seq = read_seqcount_begin(&slot->seq);
				mine = READ_ONCE(slot->owner) == c;
				for (i = 0; i < PD_NCOUNTS; i++)
					n[i] = READ_ONCE(slot->count[i]);
			} while (read_seqcount_retry(&slot->seq, seq));
			for (i = 0; mine && i < PD_NCOUNTS; i++)
				sum[i] += n[i];
		}
		smp_rmb();	/* slots before the totals again */
	} while (pd_totals_moved(c, seen) && ++tries < 8);
}
