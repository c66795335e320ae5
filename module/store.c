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
#include <linux/slab.h>
#include <linux/string.h>

#include "compat.h"
#include "gfp.h"
#include "store.h"

struct pd_class_key {
	union pd_addr	addr;
	u8		proto;
	u8		plen;
	u8		families;	/* of the prefix; 0 when plen is 0 */
	u8		pad;
};

/*
 * Classes sit in a search tree rather than a hash table: every byte of
 * the store is then in objects that a request allocates, and charged to
 * it, and there is no table to resize behind its back.
 */
struct pd_class {
	struct rb_node		node;
	struct pd_class_key	key;
	struct rb_root_cached	rules;
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

/*
 * The class of @key, or NULL; with @link, where it would go. The keys
 * are zero-padded, so memcmp() is a total order.
 */
static struct pd_class *pd_class_find(struct pd_store *store,
				      const struct pd_key *key,
				      struct rb_node ***link,
				      struct rb_node **parent)
{
	struct rb_node **p = &store->classes.rb_node, *up = NULL;
	struct pd_class_key ck;

	pd_class_key_of(&ck, key);
	while (*p) {
		struct pd_class *class = rb_entry(*p, struct pd_class, node);
		int cmp = memcmp(&ck, &class->key, sizeof(ck));

		if (!cmp)
			return class;
		up = *p;
		p = cmp < 0 ? &up->rb_left : &up->rb_right;
	}
	if (link) {
		*link = p;
		*parent = up;
	}
	return NULL;
}

void pd_store_init(struct pd_store *store)
{
	int i;

	for (i = 0; i < PD_NPROTO; i++)
		store->by_port[i] = RB_ROOT_CACHED;
	store->classes = RB_ROOT;
}

int pd_store_insert(struct pd_store *store, struct pd_rule *rule)
{
	struct rb_node **link, *parent;
	struct pd_class *class;

	class = pd_class_find(store, &rule->key, &link, &parent);
	if (!class) {
		class = kzalloc_obj(*class, PD_GFP);
		if (!class)
			return -ENOMEM;
		pd_class_key_of(&class->key, &rule->key);
		class->rules = RB_ROOT_CACHED;
		rb_link_node(&class->node, parent, link);
		rb_insert_color(&class->node, &store->classes);
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
		rb_erase(&class->node, &store->classes);
		kfree(class);
	}
}

struct pd_rule *pd_store_first_sibling(struct pd_store *store,
				       const struct pd_key *key)
{
	struct pd_class *class = pd_class_find(store, key, NULL, NULL);

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
