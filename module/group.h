/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Groups: a rule of several targets, which new flows share by weight.
 *
 * Each flow is hashed, with its addresses and ports, to one of 4096 slots;
 * each slot names the member that weighted rendezvous hashing (highest
 * random weight) chooses for it: the member whose score -ln(u) / weight is
 * smallest, u being a hash of the slot and the member uniform in (0, 1].
 * Scores are exponential with rate weight, so a member wins a share of
 * the slots in proportion to its weight; and a slot's winner changes only
 * if the change is to it or to the member that won: removing a member or
 * changing its weight moves only flows that must move, unlike Maglev's
 * table (whose filling depends on every member) or jump hashing (which
 * can neither weight nor remove a member from the middle).
 *
 * The scores are computed once per slot when the rule is made, so that a
 * packet pays a hash and a table read whatever the number of members. Only
 * a flow whose first choice cannot take it ranks the members again, to
 * pass it on in its own order.
 */
#ifndef _PD_GROUP_H
#define _PD_GROUP_H

#include <linux/jhash.h>
#include <linux/types.h>
#include <net/ipv6.h>

#include "counters.h"
#include "packet.h"
#include "target.h"

struct pd_key;

#define PD_GROUP_MAX		16
#define PD_GROUP_SLOT_BITS	12
#define PD_GROUP_SLOTS		BIT(PD_GROUP_SLOT_BITS)

struct pd_member {
	struct pd_target target;
	struct pd_counters *counters;	/* this member's share of the rule's */
	/*
	 * Who it is to the hash, seeded: not its place in the list, nor
	 * its fd.
	 */
	u32		ident;
	u8		weight;
};

struct pd_group {
	u32		seed;
	u8		size;
	u8		slot[PD_GROUP_SLOTS];	/* index into member[] */
	struct pd_member member[];	/* size of them */
};

struct pd_group *pd_group_alloc(unsigned int size, gfp_t gfp);
void pd_group_free(struct pd_group *g);
u32 pd_group_seed(u32 ns_seed, const struct pd_key *key);
void pd_groups_init(void);
void pd_group_build(struct pd_group *g, u32 seed);
void pd_group_shrink(struct pd_group *g, const struct pd_group *old,
		     unsigned long keep);
unsigned int pd_group_order(const struct pd_group *g, unsigned int slot,
			    u8 order[PD_GROUP_MAX]);

/*
 * The flow's slot. IPv6 addresses are folded first (ipv6_addr_hash): the
 * seed, unknown outside the kernel, is what keeps clients from choosing
 * their member; folding only lets them choose among their own addresses.
 */
static inline unsigned int pd_group_slot(const struct pd_group *g,
					 const struct pd_packet *pkt)
{
	u32 ports = (__force u32)pkt->sport << 16 | (__force u16)pkt->dport;
	u32 s, d;

	if (pkt->family == AF_INET) {
		s = (__force u32)pkt->saddr.v4;
		d = (__force u32)pkt->daddr.v4;
	} else {
		s = ipv6_addr_hash(&pkt->saddr.v6);
		d = ipv6_addr_hash(&pkt->daddr.v6);
	}
	return jhash_3words(s, d, ports, g->seed) & (PD_GROUP_SLOTS - 1);
}

#endif /* _PD_GROUP_H */
