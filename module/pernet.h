/* SPDX-License-Identifier: GPL-2.0 */
/* The state portdispatch keeps per network namespace. */
#ifndef _PD_PERNET_H
#define _PD_PERNET_H

#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/workqueue.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "store.h"

struct pd_table;
struct pd_txn;

struct pd_ns_stats {
	u64	lookups;
	u64	hits;
	u64	misses;
};

struct pd_net {
	/* Read by packets. NULL while the namespace has no rule. */
	struct pd_table __rcu	*table;
	struct pd_ns_stats __percpu *stats;
	struct net		*net;

	/* Serialises every change; protects everything below. */
	struct mutex		lock;
	struct pd_store		store;
	struct pd_txn		*batch;		/* the open batch, if any */
	unsigned int		nr_rules;	/* published rules */
	u32			next_id;
	u32			generation;	/* bumped by every commit */
	struct list_head	sock_rules;	/* published socket rules */
	bool			hooks_enabled;
	bool			dying;

	struct delayed_work	reaper;
	unsigned long		reaper_kicked;	/* bit 0: a packet asked */
};

extern unsigned int pd_net_id;
extern unsigned int pd_max_rules;
extern struct workqueue_struct *pd_wq;

static inline struct pd_net *pd_net(const struct net *net)
{
	return net_generic(net, pd_net_id);
}

#endif /* _PD_PERNET_H */
