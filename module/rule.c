// SPDX-License-Identifier: GPL-2.0
/* Rule objects: allocation, counters and the words that describe them. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/memcontrol.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <net/ipv6.h>

#include "compat.h"
#include "gfp.h"
#include "group.h"
#include "rule.h"

static struct kmem_cache *pd_rule_cache __read_mostly;

int pd_rules_init(void)
{
	/* Two lines for packets, two for the control plane: 256 bytes a rule. */
	BUILD_BUG_ON(sizeof(struct pd_rule) > 4 * SMP_CACHE_BYTES);
	pd_rule_cache = KMEM_CACHE(pd_rule, SLAB_HWCACHE_ALIGN | SLAB_ACCOUNT);
	return pd_rule_cache ? 0 : -ENOMEM;
}

/* Module unload, once every rule is freed. */
void pd_rules_exit(void)
{
	kmem_cache_destroy(pd_rule_cache);
}

struct pd_rule *pd_rule_alloc(const struct pd_key *key, gfp_t gfp)
{
	struct pd_rule *rule;

	rule = kmem_cache_zalloc(pd_rule_cache, gfp);
	if (!rule)
		return NULL;

	rule->counters = pd_counters_alloc(gfp);
	if (!rule->counters) {
		kmem_cache_free(pd_rule_cache, rule);
		return NULL;
	}
	rule->key = *key;
	/* Rules are made in the requesting task: it is their owner. */
	rule->memcg = get_mem_cgroup_from_mm(current->mm);
	INIT_LIST_HEAD(&rule->del_node);
	INIT_LIST_HEAD(&rule->sock_node);
	INIT_LIST_HEAD(&rule->build_node);
	return rule;
}

/* Only once no packet can see the rule: after a grace period, or never published. */
void pd_rule_free(struct pd_rule *rule)
{
	pd_target_release(&rule->target);
	pd_counters_put(rule->counters);
	mem_cgroup_put(rule->memcg);
	kmem_cache_free(pd_rule_cache, rule);
}

/* Target @i of @rule, in the order given; NULL past the last. */
static const struct pd_target *pd_rule_target(const struct pd_rule *rule,
					      unsigned int i)
{
	const struct pd_group *g = pd_rule_group(rule);

	if (!g)
		return i ? NULL : &rule->target;
	return i < g->size ? &g->member[i].target : NULL;
}

bool pd_rule_is_socket(const struct pd_rule *rule)
{
	const struct pd_target *t;
	unsigned int i;

	for (i = 0; (t = pd_rule_target(rule, i)); i++)
		if (t->kind == PD_TARGET_SOCKET)
			return true;
	return false;
}

bool pd_rule_closed(const struct pd_rule *rule)
{
	const struct pd_target *t;
	unsigned int i;

	for (i = 0; (t = pd_rule_target(rule, i)); i++)
		if (pd_target_closed(t))
			return true;
	return false;
}

static bool pd_rule_has_target(const struct pd_rule *rule,
			       const struct pd_target *target)
{
	const struct pd_target *t;
	unsigned int i;

	for (i = 0; (t = pd_rule_target(rule, i)); i++)
		if (pd_target_same(t, target))
			return true;
	return false;
}

/*
 * Whether @rule, replacing @old, still has every socket that @old's UDP
 * flows may have gone to: those flows then carry on with it. A closed
 * socket has no flows left to serve.
 */
bool pd_rule_serves_flows_of(const struct pd_rule *rule,
			     const struct pd_rule *old)
{
	const struct pd_target *t;
	unsigned int i;

	for (i = 0; (t = pd_rule_target(old, i)); i++)
		if (!pd_target_closed(t) && !pd_rule_has_target(rule, t))
			return false;
	return true;
}

/*
 * A group's replacement when members closed: the members left, with their
 * weights, the same seed (no flow of a member left moves) and the same
 * owner. NULL when none is left; an error pointer without memory.
 */
struct pd_rule *pd_rule_without_closed(const struct pd_rule *rule)
{
	const struct pd_group *old = pd_rule_group(rule);
	unsigned long live = 0;
	struct pd_rule *rest;
	struct pd_group *g;
	unsigned int i, n;

	/* Once: a socket may close meanwhile, and the reaper's next round sees it. */
	for (i = 0; i < old->size; i++)
		if (!pd_target_closed(&old->member[i].target))
			__set_bit(i, &live);
	n = hweight_long(live);
	if (!n)
		return NULL;

	rest = pd_rule_alloc(&rule->key, PD_GFP);
	if (!rest)
		return ERR_PTR(-ENOMEM);
	mem_cgroup_put(rest->memcg);
	rest->memcg = pd_memcg_get(rule->memcg);
	g = pd_group_alloc(n, PD_GFP);
	if (!g) {
		pd_rule_free(rest);
		return ERR_PTR(-ENOMEM);
	}
	rest->target.kind = PD_TARGET_GROUP;
	rest->target.group = g;
	pd_group_shrink(g, old, live);
	return rest;
}

bool pd_addr_equal(const union pd_addr *a, const union pd_addr *b, u8 families)
{
	if (families == PD_FAM_V4)
		return a->v4 == b->v4;
	return ipv6_addr_equal(&a->v6, &b->v6);
}

/* Same destination prefix; families are compared separately. */
bool pd_keys_same_prefix(const struct pd_key *a, const struct pd_key *b)
{
	if (a->proto != b->proto || a->plen != b->plen)
		return false;
	if (!a->plen)
		return true;
	return a->families == b->families &&
	       pd_addr_equal(&a->addr, &b->addr, a->families);
}

/* "tcp 80-90 ipv4 dst 192.0.2.0/24", as portctl would spell the rule. */
int pd_key_format(const struct pd_key *key, char *buf, size_t len)
{
	static const char * const fam[] = {
		[PD_FAM_V4] = " ipv4", [PD_FAM_V6] = " ipv6", [PD_FAM_ALL] = "",
	};
	const char *proto = key->proto == PD_TCP ? "tcp" : "udp";
	int n;

	if (key->port_min == key->port_max)
		n = scnprintf(buf, len, "%s %u", proto, key->port_min);
	else
		n = scnprintf(buf, len, "%s %u-%u", proto, key->port_min,
			      key->port_max);

	if (!key->plen)
		return n + scnprintf(buf + n, len - n, "%s", fam[key->families]);
	if (key->families == PD_FAM_V4)
		return n + scnprintf(buf + n, len - n, " dst %pI4/%u",
				     &key->addr.v4, key->plen);
	return n + scnprintf(buf + n, len - n, " dst %pI6c/%u",
			     &key->addr.v6, key->plen);
}
