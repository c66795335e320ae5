/* SPDX-License-Identifier: GPL-2.0 */
/* The state portdispatch keeps per network namespace. */
#ifndef _PD_PERNET_H
#define _PD_PERNET_H

#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/workqueue.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "attach.h"
#include "store.h"

struct pd_replies;
struct pd_table;
struct pd_txn;

/* lookups is not counted: it is hits + misses, one write per packet fewer. */
struct pd_ns_stats {
	u64	hits;
	u64	misses;
};

/*
 * What a packet reads, on a cache line of its own that the control plane
 * writes only to publish a table. The hooks carry a pointer to it as
 * their private data, so a packet never looks its namespace up.
 */
struct pd_datapath {
	struct pd_table __rcu	*table;		/* NULL while there is no rule */
	struct pd_ns_stats __percpu *stats;
	struct pd_net		*pn;
	struct pd_replies	*replies;	/* set before the first UDP rule */
	bool			reassemble6;	/* a UDP rule can match IPv6 */
} ____cacheline_aligned_in_smp;

struct pd_net {
	struct pd_datapath	*dp;
	struct net		*net;

	/* Serialises every change; protects everything below. */
	struct mutex		lock;
	struct pd_store		store;
	struct pd_txn		*batch;		/* the open batch, if any */
	struct delayed_work	batch_idle;	/* drops it when its owner idles */
	unsigned long		batch_deadline;	/* jiffies */
	struct list_head	dropped;	/* batches whose owner is not told */
	unsigned int		nr_rules;	/* published rules */
	u32			next_id;
	u32			group_seed;	/* secret of groups' hashes */
	u32			generation;	/* bumped by every commit */
	struct list_head	sock_rules;	/* published socket rules */
	unsigned int		udp6_rules;	/* published, that IPv6 can match */
	unsigned int		udp_rules;	/* published */
	struct pd_replies	*replies;	/* their flows, once there was one */
	struct pd_attach	attach;
	bool			dying;

	struct delayed_work	reaper;
	unsigned long		reaper_kicked;	/* bit 0: a packet asked */
	/*
	 * Whose memory cgroup pays for the reaper's table builds: the last
	 * requester's. Every request allocates in its own task, charged to
	 * its own cgroup; the reaper runs on a workqueue, charged to nobody.
	 */
	struct mem_cgroup	*memcg;
};

extern unsigned int pd_net_id;
extern unsigned int pd_max_rules;
extern unsigned int pd_max_rules_total;
extern unsigned int pd_batch_idle_ms;
extern struct workqueue_struct *pd_wq;

static inline struct pd_net *pd_net(const struct net *net)
{
	return net_generic(net, pd_net_id);
}

#endif /* _PD_PERNET_H */
