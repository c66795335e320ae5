// SPDX-License-Identifier: GPL-2.0
/* Groups: members, their slot table, and their order for one slot. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitops.h>
#include <linux/hash.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/sched.h>
#include <linux/slab.h>

#include "group.h"
#include "rule.h"

struct pd_group *pd_group_alloc(unsigned int size, gfp_t gfp)
{
	struct pd_group *g;
	unsigned int i;

	/* A slot table and 16 members: over a page, so vmalloc may do. */
	g = kvzalloc(struct_size(g, member, size), gfp);
	if (!g)
		return NULL;
	g->size = size;
	for (i = 0; i < size; i++) {
		g->member[i].counters = pd_counters_alloc(gfp);
		if (!g->member[i].counters) {
			pd_group_free(g);
			return NULL;
		}
	}
	return g;
}

/* Also of a group half made. */
void pd_group_free(struct pd_group *g)
{
	unsigned int i;

	if (!g)
		return;
	for (i = 0; i < g->size; i++) {
		pd_target_release(&g->member[i].target);
		if (g->member[i].counters)
			pd_counters_put(g->member[i].counters);
	}
	kvfree(g);
}

/*
 * What a replace keeps, a rule's protocol, ports and prefix, decides the
 * seed with the namespace's secret: a replace then moves only the flows
 * its change of members must move, and two rules split independently.
 */
u32 pd_group_seed(u32 ns_seed, const struct pd_key *key)
{
	u32 words[] = {
		key->proto,
		(u32)key->port_min << 16 | key->port_max,
		key->plen,
		jhash(&key->addr, sizeof(key->addr), 0),
	};

	return jhash2(words, ARRAY_SIZE(words), ns_seed);
}

/*
 * A socket is known by its inode, a port by its number: the same targets
 * given in another order, or by other fds, hash as they did. Mixed with
 * the seed once here, so that a score costs one mix of slot and member.
 */
static void pd_member_identify(struct pd_member *m, u32 seed)
{
	u32 id;

	if (m->target.kind == PD_TARGET_PORT)
		id = m->target.port;
	else
		id = hash_64(m->target.ino, 32) | BIT(31);
	m->ident = jhash_1word(id, seed);
}

/* log2(1 + i / 256) in 1/65536: the mantissa's share of a log2. */
static u32 pd_log2_mantissa[257] __ro_after_init;

/*
 * The table, bit by bit: squaring a mantissa in [1, 2) doubles its log,
 * and a square of 2 or more is a 1 bit (no floating point in the kernel).
 */
void __init pd_groups_init(void)
{
	unsigned int i;
	int bit;

	for (i = 0; i < 256; i++) {
		u64 m = (u64)(256 + i) << 23;	/* (1 + i / 256) * 2^31 */
		u32 frac = 0;

		for (bit = 15; bit >= 0; bit--) {
			m = (m * m) >> 31;
			if (m >= BIT_ULL(32)) {
				frac |= BIT(bit);
				m >>= 1;
			}
		}
		pd_log2_mantissa[i] = frac;
	}
	pd_log2_mantissa[256] = 1 << 16;
}

/*
 * -log2(u) in 16.16 fixed point, for u = (h + 1) / 2^32 in (0, 1]: an
 * exponential variable when h is uniform. The mantissa's log is read
 * from the table between its two nearest entries (within 2^-15).
 */
static u32 pd_neglog2(u32 h)
{
	u64 x = (u64)h + 1;
	unsigned int msb = fls64(x) - 1;
	u32 m = msb > 31 ? x >> (msb - 31) : x << (31 - msb);
	u32 i = (m >> 23) & 0xff, frac = (m >> 7) & 0xffff;
	u32 lo = pd_log2_mantissa[i], hi = pd_log2_mantissa[i + 1];

	return (32U << 16) - ((msb << 16) + lo + (((hi - lo) * frac) >> 16));
}

/*
 * Slot and member through murmur3's finalizer, whose every input bit
 * moves every output bit: a third of a jhash of the two, for a build's
 * 65,536 scores.
 */
static u32 pd_score(unsigned int slot, const struct pd_member *m)
{
	u32 h = (slot * GOLDEN_RATIO_32) ^ m->ident;

	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return pd_neglog2(h);
}

/*
 * Whether member @a (score @sa) ranks before @b for a slot: the smaller
 * score / weight, compared without dividing. A tie (of identities that
 * hash alike) goes to the first in the list.
 */
static bool pd_ranks_before(const struct pd_member *a, u32 sa,
			    const struct pd_member *b, u32 sb)
{
	return (u64)sa * b->weight < (u64)sb * a->weight;
}

/* The member that ranks first for @slot. */
static unsigned int pd_group_winner(const struct pd_group *g, unsigned int slot)
{
	unsigned int i, best = 0;
	u32 score, best_score;

	best_score = pd_score(slot, &g->member[0]);
	for (i = 1; i < g->size; i++) {
		score = pd_score(slot, &g->member[i]);
		if (pd_ranks_before(&g->member[i], score, &g->member[best],
				    best_score)) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

/* The slot table, for members whose targets are set. May sleep. */
void pd_group_build(struct pd_group *g, u32 seed)
{
	unsigned int slot, i;

	g->seed = seed;
	for (i = 0; i < g->size; i++)
		pd_member_identify(&g->member[i], seed);
	for (slot = 0; slot < PD_GROUP_SLOTS; slot++) {
		g->slot[slot] = pd_group_winner(g, slot);
		if (!(slot % 256))
			cond_resched();
	}
}

/*
 * @g: the members of @old in @keep (a bit per index), in their order.
 * A slot whose winner stays keeps it (the others rank as they did): only
 * the leavers' slots are chosen again, so the reaper's work is what moves.
 */
void pd_group_shrink(struct pd_group *g, const struct pd_group *old,
		     unsigned long keep)
{
	u8 moved_to[PD_GROUP_MAX];
	unsigned int slot, i, n = 0;

	g->seed = old->seed;
	for (i = 0; i < old->size; i++) {
		moved_to[i] = U8_MAX;
		if (!test_bit(i, &keep))
			continue;
		pd_target_copy(&g->member[n].target, &old->member[i].target);
		g->member[n].weight = old->member[i].weight;
		g->member[n].ident = old->member[i].ident;
		moved_to[i] = n++;
	}
	for (slot = 0; slot < PD_GROUP_SLOTS; slot++) {
		i = moved_to[old->slot[slot]];
		g->slot[slot] = i != U8_MAX ? i : pd_group_winner(g, slot);
		if (!(slot % 256))
			cond_resched();
	}
}

/*
 * The members in the order a flow of @slot tries them: the slot's own
 * member first. Only for a flow that member could not take: O(size^2),
 * at most 16 members.
 */
unsigned int pd_group_order(const struct pd_group *g, unsigned int slot,
			    u8 order[PD_GROUP_MAX])
{
	u32 score[PD_GROUP_MAX];
	unsigned int i, j;

	for (i = 0; i < g->size; i++) {
		u32 s = pd_score(slot, &g->member[i]);

		for (j = i; j && pd_ranks_before(&g->member[i], s,
						 &g->member[order[j - 1]],
						 score[j - 1]); j--) {
			order[j] = order[j - 1];
			score[j] = score[j - 1];
		}
		order[j] = i;
		score[j] = s;
	}
	return g->size;
}
