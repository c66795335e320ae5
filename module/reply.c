// SPDX-License-Identifier: GPL-2.0
/* Replies of steered UDP flows: see reply.h. */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/hash.h>
#include <linux/jhash.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/random.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/udp.h>
#include <net/checksum.h>
#include <net/inet_sock.h>
#include <net/ip.h>
#include <net/ipv6.h>

#include "compat.h"
#include "counters.h"
#include "gfp.h"
#include "packet.h"
#include "pernet.h"
#include "reply.h"
#include "rule.h"

unsigned int pd_max_udp_flows __read_mostly = 16384;
module_param_named(max_udp_flows, pd_max_udp_flows, uint, 0644);
MODULE_PARM_DESC(max_udp_flows, "Most steered UDP flows one network namespace remembers, to answer from the port the client used (default 16384)");

unsigned int pd_udp_timeout __read_mostly = 30;
module_param_named(udp_timeout, pd_udp_timeout, uint, 0644);
MODULE_PARM_DESC(udp_timeout, "Seconds a steered UDP flow is remembered after its last datagram (default 30, as conntrack)");

unsigned int pd_udp_timeout_stream __read_mostly = 120;
module_param_named(udp_timeout_stream, pd_udp_timeout_stream, uint, 0644);
MODULE_PARM_DESC(udp_timeout_stream, "The same, once the flow has had replies for over 2 s (default 120, as conntrack)");

#define PD_REPLY_BUCKET_BITS	12
#define PD_REPLY_LOCK_BITS	6
#define PD_REPLY_SENDER_BITS	10
/* conntrack calls a UDP flow a stream once it has had replies this long. */
#define PD_REPLY_STREAM_AGE	(2 * HZ)
/* How often the collector looks for expired flows, at most. */
#define PD_REPLY_GC_PERIOD	(5 * HZ)

struct pd_reply_flow {
	struct hlist_node	node;
	const struct sock	*sk;		/* the target: compared, not followed */
	struct pd_rule		*rule;		/* see pd_replies_forget() */
	union pd_addr		client;
	union pd_addr		orig;		/* where the client sent to */
	__be16			client_port;
	__be16			orig_port;
	__be16			target_port;	/* where the target answers from */
	u8			family;
	bool			replied;
	bool			stream;
	unsigned long		born;		/* jiffies */
	unsigned long		seen;		/* its last datagram, either way */
	struct rcu_head		rcu;
};

struct pd_replies {
	atomic_t		count;
	atomic64_t		missed;
	u32			seed;
	struct delayed_work	gc;
	/*
	 * Flows by a hash of their target socket: a datagram that any other
	 * socket sends leaves after one multiplication and one load, with
	 * no hash of its addresses, whatever the number of flows.
	 */
	atomic_t		senders[1 << PD_REPLY_SENDER_BITS];
	spinlock_t		locks[1 << PD_REPLY_LOCK_BITS];
	struct hlist_head	buckets[1 << PD_REPLY_BUCKET_BITS];
};

static struct kmem_cache *pd_flow_cache __read_mostly;

int pd_replies_init(void)
{
	pd_flow_cache = KMEM_CACHE(pd_reply_flow, SLAB_ACCOUNT);
	return pd_flow_cache ? 0 : -ENOMEM;
}

/* Module unload, after an rcu_barrier(): every flow is freed. */
void pd_replies_exit(void)
{
	kmem_cache_destroy(pd_flow_cache);
}

static u32 pd_reply_hash(const struct pd_replies *r, const struct sock *sk,
			 u8 family, const union pd_addr *client, __be16 port)
{
	u32 addr;

	if (family == AF_INET)
		addr = (__force u32)client->v4;
	else
		addr = __ipv6_addr_jhash(&client->v6, r->seed);
	return jhash_3words(addr, (__force u32)port, hash32_ptr(sk), r->seed);
}

static inline atomic_t *pd_reply_senders(struct pd_replies *r,
					 const struct sock *sk)
{
	return &r->senders[hash_ptr(sk, PD_REPLY_SENDER_BITS)];
}

static inline spinlock_t *pd_reply_lock(struct pd_replies *r, u32 hash)
{
	return &r->locks[hash & ((1 << PD_REPLY_LOCK_BITS) - 1)];
}

static inline struct hlist_head *pd_reply_bucket(struct pd_replies *r,
						 u32 hash)
{
	return &r->buckets[hash & ((1 << PD_REPLY_BUCKET_BITS) - 1)];
}

static inline bool pd_addr_same(const union pd_addr *a, const union pd_addr *b,
				u8 family)
{
	if (family == AF_INET)
		return a->v4 == b->v4;
	return ipv6_addr_equal(&a->v6, &b->v6);
}

/* Under RCU, or the bucket's lock. */
static struct pd_reply_flow *pd_reply_find(struct hlist_head *head,
					   const struct sock *sk, u8 family,
					   const union pd_addr *client,
					   __be16 port)
{
	struct pd_reply_flow *f;

	hlist_for_each_entry_rcu(f, head, node, true) {
		if (f->sk == sk && f->client_port == port &&
		    f->family == family &&
		    pd_addr_same(&f->client, client, family))
			return f;
	}
	return NULL;
}

static bool pd_reply_expired(const struct pd_reply_flow *f, unsigned long now)
{
	unsigned int secs = READ_ONCE(f->stream) ?
			    READ_ONCE(pd_udp_timeout_stream) :
			    READ_ONCE(pd_udp_timeout);

	return time_after(now, READ_ONCE(f->seen) + (unsigned long)secs * HZ);
}

/* Written only when it changes: a busy flow's line stays shared. */
static void pd_reply_touch(struct pd_reply_flow *f, unsigned long now,
			   bool reply)
{
	if (reply && !READ_ONCE(f->replied))
		WRITE_ONCE(f->replied, true);
	if (READ_ONCE(f->replied) && !READ_ONCE(f->stream) &&
	    time_after(now, f->born + PD_REPLY_STREAM_AGE))
		WRITE_ONCE(f->stream, true);
	if (READ_ONCE(f->seen) != now)
		WRITE_ONCE(f->seen, now);
}

/*
 * The rule that answers for a flow now: the rule itself, or the one that
 * replaced it keeping its target, or none. Under the bucket's lock or
 * pd_net.lock, which order these reads after pd_rule_retire()'s writes.
 */
static struct pd_rule *pd_reply_rule(struct pd_rule *rule)
{
	while (rule && READ_ONCE(rule->gone))
		rule = READ_ONCE(rule->replaced_by);
	return rule;
}

static void pd_reply_free_rcu(struct rcu_head *head)
{
	kmem_cache_free(pd_flow_cache,
			container_of(head, struct pd_reply_flow, rcu));
}

/* Under the bucket's lock. */
static void pd_reply_unlink(struct pd_replies *r, struct pd_reply_flow *f)
{
	hlist_del_rcu(&f->node);
	atomic_dec(pd_reply_senders(r, f->sk));
	atomic_dec(&r->count);
	call_rcu(&f->rcu, pd_reply_free_rcu);
}

/*
 * Room for one more flow in @head's bucket, under its lock. At the limit,
 * an expired flow makes room, or else the flow that has waited longest
 * for an answer it never got, as conntrack's early drop does: a flood of
 * queries from forged sources then displaces only its own kind.
 */
static bool pd_reply_room(struct pd_replies *r, struct hlist_head *head,
			  unsigned long now)
{
	struct pd_reply_flow *f, *victim = NULL;

	if (atomic_read(&r->count) < READ_ONCE(pd_max_udp_flows))
		return true;
	hlist_for_each_entry(f, head, node) {
		if (pd_reply_expired(f, now)) {
			victim = f;
			break;
		}
		if (!f->replied && (!victim || time_before(f->seen, victim->seen)))
			victim = f;
	}
	if (!victim)
		return false;
	pd_reply_unlink(r, victim);
	return true;
}

static unsigned long pd_reply_gc_period(void)
{
	unsigned long t = (unsigned long)min(READ_ONCE(pd_udp_timeout),
					     READ_ONCE(pd_udp_timeout_stream)) * HZ;

	return clamp(t / 2, (unsigned long)HZ, (unsigned long)PD_REPLY_GC_PERIOD);
}

/* Whether the target would answer from elsewhere than the client sent to. */
static bool pd_reply_needed(const struct sock *sk, const struct pd_packet *pkt)
{
	const struct inet_sock *inet = inet_sk(sk);

	if (inet->inet_sport != pkt->dport)
		return true;
	if (pkt->family == AF_INET)
		return inet->inet_rcv_saddr &&
		       inet->inet_rcv_saddr != pkt->daddr.v4;
	return !ipv6_addr_any(&sk->sk_v6_rcv_saddr) &&
	       !ipv6_addr_equal(&sk->sk_v6_rcv_saddr, &pkt->daddr.v6);
}

static struct pd_reply_flow *pd_reply_alloc(const struct pd_rule *rule)
{
	struct pd_reply_flow *f;
	struct mem_cgroup *old;

	/* From softirq: charged to the rule's owner, not to whoever runs. */
	old = set_active_memcg(rule->memcg);
	f = kmem_cache_alloc(pd_flow_cache, GFP_ATOMIC | __GFP_NOWARN);
	set_active_memcg(old);
	return f;
}

void pd_reply_note(struct pd_replies *r, const struct sock *sk,
		   const struct pd_packet *pkt, struct pd_rule *rule)
{
	unsigned long now = jiffies;
	struct pd_reply_flow *f, *old;
	struct hlist_head *head;
	u32 hash;

	if (!pd_reply_needed(sk, pkt))
		return;

	hash = pd_reply_hash(r, sk, pkt->family, &pkt->saddr, pkt->sport);
	head = pd_reply_bucket(r, hash);
	f = pd_reply_find(head, sk, pkt->family, &pkt->saddr, pkt->sport);
	if (f && f->orig_port == pkt->dport &&
	    pd_addr_same(&f->orig, &pkt->daddr, pkt->family) &&
	    !pd_reply_expired(f, now)) {
		pd_reply_touch(f, now, false);
		return;
	}

	/*
	 * A new flow, or one whose client now sends elsewhere: a new record
	 * takes the old one's place whole, so that a reply never leaves
	 * with half of each.
	 */
	f = pd_reply_alloc(rule);
	if (!f)
		goto missed;
	f->sk = sk;
	f->family = pkt->family;
	f->client = pkt->saddr;
	f->client_port = pkt->sport;
	f->orig = pkt->daddr;
	f->orig_port = pkt->dport;
	f->target_port = inet_sk(sk)->inet_sport;
	f->replied = false;
	f->stream = false;
	f->born = now;
	f->seen = now;

	spin_lock(pd_reply_lock(r, hash));
	f->rule = pd_reply_rule(rule);
	if (!f->rule)
		goto unlock_free;
	old = pd_reply_find(head, sk, pkt->family, &pkt->saddr, pkt->sport);
	if (old) {
		hlist_replace_rcu(&old->node, &f->node);
		call_rcu(&old->rcu, pd_reply_free_rcu);
	} else if (pd_reply_room(r, head, now)) {
		atomic_inc(pd_reply_senders(r, sk));
		hlist_add_head_rcu(&f->node, head);
		atomic_inc(&r->count);
	} else {
		spin_unlock(pd_reply_lock(r, hash));
		kmem_cache_free(pd_flow_cache, f);
		goto missed;
	}
	spin_unlock(pd_reply_lock(r, hash));
	if (!delayed_work_pending(&r->gc))
		queue_delayed_work(pd_wq, &r->gc, pd_reply_gc_period());
	return;

unlock_free:
	/* Its rule left while the datagram was on its way. */
	spin_unlock(pd_reply_lock(r, hash));
	kmem_cache_free(pd_flow_cache, f);
	return;
missed:
	atomic64_inc(&r->missed);
}

/* Expired flows leave; the collector runs while any flow is left. */
static void pd_replies_gc(struct work_struct *work)
{
	struct pd_replies *r = container_of(to_delayed_work(work),
					    struct pd_replies, gc);
	unsigned long now = jiffies;
	struct pd_reply_flow *f;
	struct hlist_node *tmp;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(r->buckets); i++) {
		if (hlist_empty(&r->buckets[i]))
			continue;
		spin_lock_bh(pd_reply_lock(r, i));
		hlist_for_each_entry_safe(f, tmp, &r->buckets[i], node)
			if (pd_reply_expired(f, now))
				pd_reply_unlink(r, f);
		spin_unlock_bh(pd_reply_lock(r, i));
		if (!(i % 256))
			cond_resched();
	}
	if (atomic_read(&r->count))
		queue_delayed_work(pd_wq, &r->gc, pd_reply_gc_period());
}

int pd_replies_prepare(struct pd_net *pn)
{
	struct pd_replies *r;
	unsigned int i;

	lockdep_assert_held(&pn->lock);
	if (pn->replies)
		return 0;
	r = kvzalloc_obj(*r, PD_GFP);
	if (!r)
		return -ENOMEM;
	r->seed = get_random_u32();
	for (i = 0; i < ARRAY_SIZE(r->locks); i++)
		spin_lock_init(&r->locks[i]);
	INIT_DELAYED_WORK(&r->gc, pd_replies_gc);
	pn->replies = r;
	pd_attach_set_replies(pn, r);
	/* Before any table with a UDP rule: see pd_steer(). */
	WRITE_ONCE(pn->dp->replies, r);
	return 0;
}

void pd_replies_forget(struct pd_net *pn)
{
	struct pd_replies *r = pn->replies;
	struct pd_reply_flow *f;
	struct hlist_node *tmp;
	struct pd_rule *rule;
	unsigned int i;

	lockdep_assert_held(&pn->lock);
	if (!r || !atomic_read(&r->count))
		return;
	for (i = 0; i < ARRAY_SIZE(r->buckets); i++) {
		if (hlist_empty(&r->buckets[i]))
			continue;
		spin_lock_bh(pd_reply_lock(r, i));
		hlist_for_each_entry_safe(f, tmp, &r->buckets[i], node) {
			rule = pd_reply_rule(f->rule);
			if (!rule)
				pd_reply_unlink(r, f);
			else if (rule != f->rule)
				WRITE_ONCE(f->rule, rule);
		}
		spin_unlock_bh(pd_reply_lock(r, i));
		if (!(i % 256))
			cond_resched();
	}
}

void pd_replies_destroy(struct pd_net *pn)
{
	struct pd_replies *r = pn->replies;
	struct pd_reply_flow *f;
	struct hlist_node *tmp;
	unsigned int i;

	if (!r)
		return;
	cancel_delayed_work_sync(&r->gc);
	for (i = 0; i < ARRAY_SIZE(r->buckets); i++) {
		hlist_for_each_entry_safe(f, tmp, &r->buckets[i], node)
			kmem_cache_free(pd_flow_cache, f);
		if (!(i % 256))
			cond_resched();
	}
	kvfree(r);
	pn->replies = NULL;
}

void pd_replies_stats(struct pd_net *pn, u32 *flows, u64 *missed)
{
	struct pd_replies *r = pn->replies;

	*flows = r ? atomic_read(&r->count) : 0;
	*missed = r ? atomic64_read(&r->missed) : 0;
}

/*
 * The reply leaves from where the client sent to. Checksums are updated
 * as NAT updates them: for a checksum the device or GSO completes later
 * (CHECKSUM_PARTIAL) only the pseudo-header's part, which holds the
 * address; an IPv4 checksum of zero means none, and one that comes out
 * as zero is sent as all ones. A new source address may change the route
 * (policy routing by source), so it is chosen again, as mangle does.
 */
static noinline unsigned int pd_reply_rewrite(struct sk_buff *skb,
					      const struct nf_hook_state *state,
					      struct pd_reply_flow *f,
					      unsigned int thoff,
					      unsigned long now)
{
	bool reroute = false, csum;
	struct udphdr *uh;
	int err = 0;

	if (skb_ensure_writable(skb, thoff + sizeof(*uh)))
		return NF_DROP;
	uh = (struct udphdr *)(skb->data + thoff);
	csum = uh->check || skb->ip_summed == CHECKSUM_PARTIAL;

	if (f->family == AF_INET) {
		struct iphdr *iph = ip_hdr(skb);

		if (iph->saddr != f->orig.v4) {
			if (csum)
				inet_proto_csum_replace4(&uh->check, skb,
							 iph->saddr, f->orig.v4,
							 true);
			csum_replace4(&iph->check, iph->saddr, f->orig.v4);
			iph->saddr = f->orig.v4;
			reroute = true;
		}
	} else {
		struct ipv6hdr *ip6h = ipv6_hdr(skb);

		if (!ipv6_addr_equal(&ip6h->saddr, &f->orig.v6)) {
			if (csum)
				inet_proto_csum_replace16(&uh->check, skb,
							  ip6h->saddr.s6_addr32,
							  f->orig.v6.s6_addr32,
							  true);
			ip6h->saddr = f->orig.v6;
			reroute = true;
		}
	}
	if (csum) {
		inet_proto_csum_replace2(&uh->check, skb, uh->source,
					 f->orig_port, false);
		if (!uh->check)
			uh->check = CSUM_MANGLED_0;
	}
	uh->source = f->orig_port;

	pd_reply_touch(f, now, true);
	/* pd_count() wants bottom halves off; a sender may have them on. */
	local_bh_disable();
	pd_count(READ_ONCE(f->rule)->counters, PD_COUNT_REPLIES);
	local_bh_enable();

	if (reroute) {
		if (f->family == AF_INET)
			err = ip_route_me_harder(state->net, state->sk, skb,
						 RTN_UNSPEC);
		else
			err = ip6_route_me_harder(state->net, state->sk, skb);
	}
	return err < 0 ? NF_DROP_ERR(err) : NF_ACCEPT;
}

/* A packet of a socket that is some flow's target: is it a reply? */
static noinline unsigned int pd_reply_slow(struct pd_replies *r,
					   struct sk_buff *skb,
					   const struct nf_hook_state *state,
					   u8 family)
{
	const struct udphdr *uh;
	struct pd_reply_flow *f;
	union pd_addr client;
	unsigned int thoff;
	struct udphdr _uh;
	unsigned long now;

	if (family == AF_INET) {
		const struct iphdr *iph = ip_hdr(skb);

		if (iph->protocol != IPPROTO_UDP || ip_is_fragment(iph))
			return NF_ACCEPT;
		thoff = skb_network_offset(skb) + ip_hdrlen(skb);
		client.v4 = iph->daddr;
	} else {
		const struct ipv6hdr *ip6h = ipv6_hdr(skb);
		int flags = 0;

		thoff = skb_network_offset(skb) + sizeof(*ip6h);
		if (ip6h->nexthdr != IPPROTO_UDP) {
			if (!ipv6_ext_hdr(ip6h->nexthdr))
				return NF_ACCEPT;
			/* From 0: a start would have to be an IPv6 header. */
			thoff = 0;
			if (ipv6_find_hdr(skb, &thoff, -1, NULL, &flags) !=
			    IPPROTO_UDP || (flags & IP6_FH_F_FRAG))
				return NF_ACCEPT;
		}
		client.v6 = ip6h->daddr;
	}

	uh = skb_header_pointer(skb, thoff, sizeof(_uh), &_uh);
	if (!uh)
		return NF_ACCEPT;
	f = pd_reply_find(pd_reply_bucket(r, pd_reply_hash(r, skb->sk, family,
							   &client, uh->dest)),
			  skb->sk, family, &client, uh->dest);
	if (likely(!f) || f->target_port != uh->source)
		return NF_ACCEPT;
	now = jiffies;
	if (pd_reply_expired(f, now))
		return NF_ACCEPT;
	return pd_reply_rewrite(skb, state, f, thoff, now);
}

/*
 * Every packet the namespace sends while it has UDP rules comes here; one
 * whose socket is no flow's target leaves at the first test, before the
 * slow path's frame is set up.
 */
static __always_inline unsigned int pd_reply_hook(void *priv,
						  struct sk_buff *skb,
						  const struct nf_hook_state *state,
						  u8 family)
{
	struct pd_replies *r = priv;

	if (!skb->sk || !atomic_read(pd_reply_senders(r, skb->sk)))
		return NF_ACCEPT;
	return pd_reply_slow(r, skb, state, family);
}

unsigned int pd_reply_hook_ipv4(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	return pd_reply_hook(priv, skb, state, AF_INET);
}

unsigned int pd_reply_hook_ipv6(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	return pd_reply_hook(priv, skb, state, AF_INET6);
}
