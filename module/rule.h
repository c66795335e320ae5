/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A rule: which flows (protocol, destination ports, destination prefix,
 * address families) go to which target. Rules are immutable once staged,
 * except for their counters; a replace stages a new rule.
 */
#ifndef _PD_RULE_H
#define _PD_RULE_H

#include <linux/in6.h>
#include <linux/interval_tree_generic.h>
#include <linux/list.h>
#include <linux/percpu.h>
#include <linux/rbtree.h>
#include <linux/types.h>

#include "addr.h"
#include "counters.h"
#include "target.h"

struct mem_cgroup;
struct pd_class;
struct pd_group;
struct pd_txn;

/* Protocols get dense indexes so that tables can be arrays. */
enum pd_proto {
	PD_TCP,
	PD_UDP,
	PD_NPROTO,
};

/* Address families a rule serves, as a mask. */
#define PD_FAM_V4	BIT(0)
#define PD_FAM_V6	BIT(1)
#define PD_FAM_ALL	(PD_FAM_V4 | PD_FAM_V6)

/*
 * What a rule matches. With plen 0 the rule matches every address of its
 * families and addr is zero; with plen > 0, families is the prefix's one
 * family and addr is the prefix, host bits clear.
 */
struct pd_key {
	u16		port_min;
	u16		port_max;
	u8		proto;		/* enum pd_proto */
	u8		families;	/* PD_FAM_* */
	u8		plen;
	union pd_addr	addr;
};

struct pd_rule {
	/*
	 * What packets read (counters, target.kind, .port, .sk or .group),
	 * written only before the rule is published. Rules come from a
	 * cache aligned to cache lines, so the control plane's writes
	 * below, to rules that packets are reading, never touch these lines.
	 */
	struct pd_counters *counters;	/* a replace hands them on */
	struct pd_target target;	/* of several: PD_TARGET_GROUP */
	struct pd_key	key;
	u32		id;
	/* Whose memory cgroup pays for the UDP flows it steers (reply.c). */
	struct mem_cgroup *memcg;

	/*
	 * Transaction state: staged, not yet seen by packets; or leaving;
	 * and by whom. The reaper commits while a batch is open, so the
	 * store can hold another transaction's staging.
	 */
	const struct pd_txn *staged_by ____cacheline_aligned_in_smp;
	bool		staged_add;
	bool		staged_del;
	u8		del_reason;	/* enum portdispatch_del_reason */
	/* Beside the flags: the rule then fits four cache lines, not five. */
	u16		class_subtree_last;
	/* Left the table: see pd_rule_retire(). */
	bool		gone;

	/* The store's two indexes (store.c). */
	struct rb_node	port_rb;	/* all rules of a protocol */
	u64		port_subtree_last;
	struct rb_node	class_rb;	/* rules with the same prefix */
	struct pd_class	*class;

	struct list_head del_node;	/* batch journal, then garbage */
	struct list_head sock_node;	/* pd_net.sock_rules */
	union {
		struct list_head build_node;	/* scratch for table builds */
		/* Once gone, never built again (pd_rule_retire()). */
		struct pd_rule	*replaced_by;
	};
};

int pd_rules_init(void);
void pd_rules_exit(void);
struct pd_rule *pd_rule_alloc(const struct pd_key *key, gfp_t gfp);
void pd_rule_free(struct pd_rule *rule);

bool pd_keys_same_prefix(const struct pd_key *a, const struct pd_key *b);
bool pd_addr_equal(const union pd_addr *a, const union pd_addr *b, u8 families);
int pd_key_format(const struct pd_key *key, char *buf, size_t len);

/*
 * Whether @rule is in the table that @txn's commit publishes: what @txn
 * staged counts, another transaction's staging does not (yet).
 */
static inline bool pd_rule_live_after(const struct pd_rule *rule,
				      const struct pd_txn *txn)
{
	if (rule->staged_by && rule->staged_by != txn)
		return !rule->staged_add;
	return !rule->staged_del;
}

/* A rule of several targets: its group (group.h), else NULL. */
static inline struct pd_group *pd_rule_group(const struct pd_rule *rule)
{
	return rule->target.kind == PD_TARGET_GROUP ? rule->target.group : NULL;
}

/* A rule with a socket among its targets: one the reaper watches. */
bool pd_rule_is_socket(const struct pd_rule *rule);
/* A target of @rule is a socket that closed. */
bool pd_rule_closed(const struct pd_rule *rule);
struct pd_rule *pd_rule_without_closed(const struct pd_rule *rule);
bool pd_rule_serves_flows_of(const struct pd_rule *rule,
			     const struct pd_rule *old);

static inline bool pd_rule_is_udp(const struct pd_rule *rule)
{
	return rule->key.proto == PD_UDP;
}

/*
 * @rule has left the published table, in favour of @successor if a replace
 * put one there. Under pd_net.lock, before pd_replies_forget(): flows whose
 * datagrams found @rule go on with a successor that has its target.
 */
static inline void pd_rule_retire(struct pd_rule *rule,
				  struct pd_rule *successor)
{
	if (successor && !pd_rule_serves_flows_of(successor, rule))
		successor = NULL;
	/* Over build_node, which pointed at itself. */
	WRITE_ONCE(rule->replaced_by, successor);
	WRITE_ONCE(rule->gone, true);
}

/*
 * Ports are in an IPv6 datagram's first fragment only, and IPv6 reassembles
 * after LOCAL_IN: a UDP rule that IPv6 can match has the hook reassemble
 * UDP fragments. TCP segments are not fragmented in practice.
 */
static inline bool pd_rule_is_udp6(const struct pd_rule *rule)
{
	return rule->key.proto == PD_UDP && (rule->key.families & PD_FAM_V6);
}

#endif /* _PD_RULE_H */
