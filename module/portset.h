/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A port set: the rules covering one stretch of ports, ready for a
 * longest-prefix match. The rules are grouped by prefix length, longest
 * first, IPv4 groups before IPv6 ones. A packet costs one probe per group
 * of its family, however many rules a group holds: a small group is
 * scanned, a larger one has a hash index. Immutable once built; shared by
 * the blocks that point to it, and freed with the last of them.
 */
#ifndef _PD_PORTSET_H
#define _PD_PORTSET_H

#include <linux/list.h>
#include <linux/refcount.h>
#include <linux/socket.h>
#include <linux/types.h>

#include "addr.h"

struct pd_rule;

struct pd_entry {
	union pd_addr	addr;		/* the prefix, host bits clear */
	struct pd_rule	*rule;		/* a lone replace swaps it in place */
};

/* A hash slot: an entry's index + 1, or one of these. */
#define PD_SLOT_EMPTY	0U
#define PD_SLOT_GONE	U32_MAX		/* removed: probing goes on past it */

/*
 * The entries of one prefix length. A small group is scanned. A larger one
 * has a hash index, and room to take entries in place: a lone change of
 * one of its prefixes writes an entry, then the slot that makes it
 * visible, and costs the same whatever the group's size (pd_portset_patch).
 */
struct pd_len_group {
	struct pd_entry	*entries;
	u32		*slots;		/* hashed only */
	u32		mask;		/* slots - 1; 0 when scanned */
	u32		nr;		/* entries written, removed ones included */
	u32		cap;		/* hashed: entries there is room for */
	u32		live;		/* hashed: entries a slot points to */
	u8		plen;
};

struct pd_portset {
	refcount_t	ref;		/* blocks pointing here */
	u16		nr_groups[2];	/* IPv4, then IPv6 */
	struct pd_rule	*any[2];	/* the rule without a prefix, if any */
	struct pd_len_group	groups[];
};

void pd_portset_init(void);

/* A set for the rules on @active (through build_node), for @refs blocks. */
struct pd_portset *pd_portset_build(struct list_head *active,
				    unsigned int refs);
int pd_portset_patch(struct pd_portset *set, struct pd_rule *add,
		     struct pd_rule *del);
void pd_portset_put(struct pd_portset *set);
struct pd_rule *pd_portset_match_prefix(const struct pd_portset *set,
					u8 family, const union pd_addr *daddr);

/* The rule for @daddr, or NULL. */
static inline struct pd_rule *pd_portset_match(const struct pd_portset *set,
					       u8 family,
					       const union pd_addr *daddr)
{
	unsigned int f = family == AF_INET6;

	/* Most ports have one rule, for every address. */
	if (set->nr_groups[f] == 1 && set->any[f])
		return set->any[f];
	return pd_portset_match_prefix(set, family, daddr);
}

#endif /* _PD_PORTSET_H */
