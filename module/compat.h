/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels portdispatch builds against (6.1 and
 * later). Each one is detected by a feature, not a version number: macros
 * directly, struct layouts by a probe in Kbuild (PD_HAVE_*).
 */
#ifndef _PD_COMPAT_H
#define _PD_COMPAT_H

#include <linux/atomic.h>
#include <linux/kernel.h>
#include <linux/memcontrol.h>
#include <linux/slab.h>
#include <net/inet6_hashtables.h>
#include <net/inet_hashtables.h>
#include <net/netlink.h>
#include <net/udp.h>

/*
 * NL_SET_ERR_MSG_FMT (6.2) formats into a buffer inside the extack. Before
 * it, the message must outlive the doit until the ack is written, and
 * requests run in parallel (parallel_ops), so a single static buffer
 * could be overwritten by a concurrent request. A small ring of buffers makes that a
 * matter of dozens of concurrent failing requests within one ack's time, and
 * even then only the text is wrong: every slot stays NUL-terminated.
 */
#ifndef NL_SET_ERR_MSG_FMT
#define PD_ERRBUF_SLOTS	32
#define PD_ERRBUF_LEN	80

char *pd_compat_errbuf(void);

#define NL_SET_ERR_MSG_FMT(extack, fmt, args...) do {			\
	struct netlink_ext_ack *__extack = (extack);			\
	char *__buf;							\
									\
	if (!__extack)							\
		break;							\
	__buf = pd_compat_errbuf();					\
	snprintf(__buf, PD_ERRBUF_LEN - 1, fmt, ##args);		\
	__extack->_msg = __buf;						\
} while (0)
#endif

/*
 * Allocations typed by what they allocate (new in 7.x): the size comes from
 * the pointer's own type, so the two cannot disagree, and 7.x checks the
 * result's type. Before them, the same size through sizeof; the flags are
 * always given here.
 */
#ifndef kmalloc_obj
#define kmalloc_obj(var, gfp)	kmalloc(sizeof(var), gfp)
#define kzalloc_obj(var, gfp)	kzalloc(sizeof(var), gfp)
#define kvzalloc_obj(var, gfp)	kvzalloc(sizeof(var), gfp)
#endif

/* UDP hash tables became per network namespace in 6.2. */
static inline struct udp_table *pd_udp_table(struct net *net)
{
#ifdef PD_HAVE_NETNS_UDP_TABLE
	return net->ipv4.udp_table;
#else
	return &udp_table;
#endif
}

/*
 * The socket lookups, under 7.3's names and arguments: since 7.3 they find
 * the namespace's TCP hashinfo and UDP table themselves; before, every
 * caller passed the tables it had.
 */
#ifdef PD_HAVE_TCP_LOOKUP_HASHINFO
static inline struct sock *
pd_inet_lookup_established(struct net *net, __be32 saddr, __be16 sport,
			   __be32 daddr, u16 hnum, int dif, int sdif)
{
	return __inet_lookup_established(net, net->ipv4.tcp_death_row.hashinfo,
					 saddr, sport, daddr, hnum, dif, sdif);
}

static inline struct sock *
pd_inet6_lookup_established(struct net *net, const struct in6_addr *saddr,
			    __be16 sport, const struct in6_addr *daddr,
			    u16 hnum, int dif, int sdif)
{
	return __inet6_lookup_established(net, net->ipv4.tcp_death_row.hashinfo,
					  saddr, sport, daddr, hnum, dif, sdif);
}

static inline struct sock *
pd_inet_lookup_listener(struct net *net, struct sk_buff *skb, int doff,
			__be32 saddr, __be16 sport, __be32 daddr,
			unsigned short hnum, int dif, int sdif)
{
	return __inet_lookup_listener(net, net->ipv4.tcp_death_row.hashinfo,
				      skb, doff, saddr, sport, daddr, hnum,
				      dif, sdif);
}

static inline struct sock *
pd_inet6_lookup_listener(struct net *net, struct sk_buff *skb, int doff,
			 const struct in6_addr *saddr, __be16 sport,
			 const struct in6_addr *daddr, unsigned short hnum,
			 int dif, int sdif)
{
	return inet6_lookup_listener(net, net->ipv4.tcp_death_row.hashinfo,
				     skb, doff, saddr, sport, daddr, hnum,
				     dif, sdif);
}
#else
#define pd_inet_lookup_established	__inet_lookup_established
#define pd_inet6_lookup_established	__inet6_lookup_established
#define pd_inet_lookup_listener		__inet_lookup_listener
#define pd_inet6_lookup_listener	inet6_lookup_listener
#endif

#ifdef PD_HAVE_UDP_LOOKUP_TABLE
static inline struct sock *
pd_udp4_lib_lookup(struct net *net, __be32 saddr, __be16 sport, __be32 daddr,
		   __be16 dport, int dif, int sdif, struct sk_buff *skb)
{
	return __udp4_lib_lookup(net, saddr, sport, daddr, dport, dif, sdif,
				 pd_udp_table(net), skb);
}

static inline struct sock *
pd_udp6_lib_lookup(struct net *net, const struct in6_addr *saddr,
		   __be16 sport, const struct in6_addr *daddr, __be16 dport,
		   int dif, int sdif, struct sk_buff *skb)
{
	return __udp6_lib_lookup(net, saddr, sport, daddr, dport, dif, sdif,
				 pd_udp_table(net), skb);
}
#else
#define pd_udp4_lib_lookup	__udp4_lib_lookup
#define pd_udp6_lib_lookup	__udp6_lib_lookup
#endif

/*
 * Another reference to a memory cgroup one is held to. No helper takes
 * one (mem_cgroup_put() has no pair), and a kernel without memory cgroups
 * has none to take.
 */
static inline struct mem_cgroup *pd_memcg_get(struct mem_cgroup *memcg)
{
#ifdef CONFIG_MEMCG
	if (memcg)
		css_get(&memcg->css);
#endif
	return memcg;
}

#endif /* _PD_COMPAT_H */
