/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-rule counters whose memory does not grow with the number of CPUs.
 *
 * Per-CPU counters for each rule would cost every rule 16 bytes per
 * possible CPU: 4 KiB a rule on a 256-CPU host. Instead a rule's totals
 * are one small shared object, and each CPU keeps what it counted lately
 * in a small direct-mapped cache of its own (64 slots, module-wide). A
 * packet whose rule already owns its slot writes only its own CPU's
 * memory, as with per-CPU counters; when another rule needs the slot, the
 * counts move to the shared totals with atomic adds. Per-CPU memory is
 * the cache, whatever the number of rules.
 *
 * A slot holds a reference on the object it counts for, so counts never
 * land in freed memory; an object outlives its rules only while slots
 * still hold it, at most 64 objects per CPU.
 */
#ifndef _PD_COUNTERS_H
#define _PD_COUNTERS_H

#include <linux/atomic.h>
#include <linux/hash.h>
#include <linux/percpu.h>
#include <linux/refcount.h>
#include <linux/seqlock.h>
#include <linux/types.h>

enum pd_count {
	PD_COUNT_STEERED,
	PD_COUNT_UNDELIVERABLE,
	PD_COUNT_REPLIES,	/* UDP replies that left from the client's port */
	PD_NCOUNTS,
};

struct pd_counters {
	atomic64_t	total[PD_NCOUNTS];	/* what slots handed over */
	refcount_t	ref;			/* rules, and slots counting for it */
};

#define PD_COUNT_SLOT_BITS	6

struct pd_count_slot {
	seqcount_t	seq;		/* a reader sees a claim whole */
	struct pd_counters *owner;
	unsigned long	count[PD_NCOUNTS];
};

struct pd_count_cache {
	struct pd_count_slot slot[1 << PD_COUNT_SLOT_BITS];
};

DECLARE_PER_CPU_ALIGNED(struct pd_count_cache, pd_count_cache);

int pd_counters_init(void);
void pd_counters_exit(void);

struct pd_counters *pd_counters_alloc(gfp_t gfp);
void pd_counters_put(struct pd_counters *c);

static inline struct pd_counters *pd_counters_get(struct pd_counters *c)
{
	refcount_inc(&c->ref);
	return c;
}

void pd_counters_claim(struct pd_count_slot *slot, struct pd_counters *c);
void pd_counters_read(struct pd_counters *c, u64 sum[PD_NCOUNTS]);

/*
 * Packets only, from the netfilter hook: softirq, or bottom halves
 * disabled, so that nothing else on this CPU is in its cache meanwhile.
 * @c belongs to a rule the packet found under RCU.
 */
static inline void pd_count(struct pd_counters *c, enum pd_count what)
{
	struct pd_count_slot *slot;

	slot = this_cpu_ptr(&pd_count_cache.slot[hash_ptr(c, PD_COUNT_SLOT_BITS)]);
	if (unlikely(slot->owner != c))
		pd_counters_claim(slot, c);
	/* Only this CPU writes it; readers elsewhere take it whole. */
	WRITE_ONCE(slot->count[what], slot->count[what] + 1);
}

#endif /* _PD_COUNTERS_H */
