// SPDX-License-Identifier: GPL-2.0
/*
 * The rule store. Rules of one protocol live in an interval tree over
 * their ports, ordered by (first port, id) so that a dump can resume from a
 * position. Rules that share a destination prefix also live in their
 * "class", an interval tree of its own, so that checking a new rule for
 * conflicts looks at its prefix only, however many prefixes share a port.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/interval_tree_generic.h>
#include <linux/rhashtable.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "store.h"

struct pd_class_key {
	union pd_addr	addr;
	u8		proto;
	u8		plen;
	u8		families;	/* of the prefix; 0 when plen is 0 */
	u8		pad;
};

struct pd_class {
	struct rhash_head	node;
	struct pd_class_key	key;
	struct rb_root_cached	rules;
	struct rcu_head		rcu;
};

static const struct rhashtable_params pd_class_params = {
	.head_offset		= offsetof(struct pd_class, node),
	.key_offset		= offsetof(struct pd_class, key),
	.key_len		= sizeof(struct pd_class_key),
	.automatic_shrinking	= true,
};

/* Ports in the high half, the id below: equal ports keep insertion order. */
static inline u64 pd_port_start(const struct pd_rule *rule)
{
	return ((u64)rule->key.port_min << 32) | rule->id;
}

static inline u64 pd_port_last(const struct pd_rule *rule)
{
	return ((u64)rule->key.port_max << 32) | U32_MAX;
}

INTERVAL_TREE_DEFINE(struct pd_rule, port_rb, u64, port_subtree_last,
		     pd_port_start, pd_port_last, static, pd_port_tree)

static inline u16 pd_class_start(const struct pd_rule *rule)
{
	return rule->key.port_min;
}

static inline u16 pd_class_last(const struct pd_rule *rule)
{
	return rule->key.port_max;
}

INTERVAL_TREE_DEFINE(struct pd_rule, class_rb, u16, class_subtree_last,
		     pd_class_start, pd_class_last, static, pd_class_tree)

static void pd_class_key_of(struct pd_class_key *ck, const struct pd_key *key)
{
	memset(ck, 0, sizeof(*ck));
	ck->proto = key->proto;
	ck->plen = key->plen;
	if (key->plen) {
		ck->families = key->families;
		ck->addr = key->addr;
	}
}

static struct pd_class *pd_class_find(struct pd_store *store,
				      const struct pd_key *key)
{
	struct pd_class_key ck;

	pd_class_key_of(&ck, key);
	return rhashtable_lookup_fast(&store->classes, &ck, pd_class_params);
}

int pd_store_init(struct pd_store *store)
{
	int i;

	for (i = 0; i < PD_NPROTO; i++)
		store->by_port[i] = RB_ROOT_CACHED;
	return rhashtable_init(&store->classes, &pd_class_params);
}

/* The store must be empty: every rule has been removed. */
void pd_store_destroy(struct pd_store *store)
{
	rhashtable_destroy(&store->classes);
}

int pd_store_insert(struct pd_store *store, struct pd_rule *rule)
{
	struct pd_class *class = pd_class_find(store, &rule->key);
	int err;

	if (!class) {
		class = kzalloc(sizeof(*class), GFP_KERNEL);
		if (!class)
			return -ENOMEM;
		pd_class_key_of(&class->key, &rule->key);
		class->rules = RB_ROOT_CACHED;
		err = rhashtable_insert_fast(&store->classes, &class->node,
					     pd_class_params);
		if (err) {
			kfree(class);
			return err;
		}
	}

	rule->class = class;
	pd_class_tree_insert(rule, &class->rules);
	pd_port_tree_insert(rule, &store->by_port[rule->key.proto]);
	return 0;
}

void pd_store_remove(struct pd_store *store, struct pd_rule *rule)
{
	struct pd_class *class = rule->class;

	pd_port_tree_remove(rule, &store->by_port[rule->key.proto]);
	pd_class_tree_remove(rule, &class->rules);
	rule->class = NULL;

	if (RB_EMPTY_ROOT(&class->rules.rb_root)) {
		rhashtable_remove_fast(&store->classes, &class->node,
				       pd_class_params);
		/* rhashtable may still walk it under RCU while resizing. */
		kfree_rcu(class, rcu);
	}
}

struct pd_rule *pd_store_first_sibling(struct pd_store *store,
				       const struct pd_key *key)
{
	struct pd_class *class = pd_class_find(store, key);

	if (!class)
		return NULL;
	return pd_class_tree_iter_first(&class->rules, key->port_min,
					key->port_max);
}

struct pd_rule *pd_store_next_sibling(struct pd_rule *rule,
				      const struct pd_key *key)
{
	return pd_class_tree_iter_next(rule, key->port_min, key->port_max);
}

struct pd_rule *pd_store_first_in(struct pd_store *store, u8 proto,
				  u16 lo, u16 hi)
{
	return pd_port_tree_iter_first(&store->by_port[proto], (u64)lo << 32,
				       ((u64)hi << 32) | U32_MAX);
}

struct pd_rule *pd_store_next_in(struct pd_rule *rule, u16 lo, u16 hi)
{
	return pd_port_tree_iter_next(rule, (u64)lo << 32,
				      ((u64)hi << 32) | U32_MAX);
}

u64 pd_rule_pos(const struct pd_rule *rule)
{
	return pd_port_start(rule);
}

/* The first rule at or after @pos; the tree puts equal keys to the right. */
struct pd_rule *pd_store_seek(struct pd_store *store, u8 proto, u64 pos)
{
	struct rb_node *node = store->by_port[proto].rb_root.rb_node;
	struct pd_rule *found = NULL;

	while (node) {
		struct pd_rule *rule = rb_entry(node, struct pd_rule, port_rb);

		if (pd_port_start(rule) >= pos) {
			found = rule;
			node = node->rb_left;
		} else {
			node = node->rb_right;
		}
	}
	return found;
}

struct pd_rule *pd_store_next(struct pd_rule *rule)
{
	struct rb_node *node = rb_next(&rule->port_rb);

	return node ? rb_entry(node, struct pd_rule, port_rb) : NULL;
}
