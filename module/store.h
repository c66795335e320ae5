/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The authoritative set of rules of a namespace, staged ones included,
 * indexed for the writers: by port (table builds, dumps) and by prefix
 * (conflict checks). Packets never look here; they read the compiled
 * table. Callers hold pd_net.lock.
 */
#ifndef _PD_STORE_H
#define _PD_STORE_H

#include <linux/rbtree.h>

#include "rule.h"

struct pd_store {
	struct rb_root_cached	by_port[PD_NPROTO];
	struct rb_root		classes;	/* struct pd_class, by prefix */
};

void pd_store_init(struct pd_store *store);

int pd_store_insert(struct pd_store *store, struct pd_rule *rule);
void pd_store_remove(struct pd_store *store, struct pd_rule *rule);

/* Rules with the prefix of @key whose ports overlap @key's. */
struct pd_rule *pd_store_first_sibling(struct pd_store *store,
				       const struct pd_key *key);
struct pd_rule *pd_store_next_sibling(struct pd_rule *rule,
				      const struct pd_key *key);

/* Rules of protocol @proto whose ports overlap [lo, hi]. */
struct pd_rule *pd_store_first_in(struct pd_store *store, u8 proto,
				  u16 lo, u16 hi);
struct pd_rule *pd_store_next_in(struct pd_rule *rule, u16 lo, u16 hi);

/*
 * Every rule of a protocol in (first port, id) order; a dump resumes from
 * the position after the last rule it sent.
 */
u64 pd_rule_pos(const struct pd_rule *rule);
struct pd_rule *pd_store_seek(struct pd_store *store, u8 proto, u64 pos);
struct pd_rule *pd_store_next(struct pd_rule *rule);

#endif /* _PD_STORE_H */
