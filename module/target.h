/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Targets: where a rule sends new flows. A socket target holds a reference
 * to one socket for the rule's whole life; a port target names a local port
 * and is resolved to whatever socket serves it when a flow arrives.
 */
#ifndef _PD_TARGET_H
#define _PD_TARGET_H

#include <linux/sched.h>
#include <linux/types.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "addr.h"

struct net;
struct netlink_ext_ack;
struct nlattr;
struct pid;
struct pid_namespace;
struct sock;
struct pd_group;
struct pd_key;

enum pd_target_kind {
	PD_TARGET_SOCKET,
	PD_TARGET_PORT,
	PD_TARGET_GROUP,	/* several, by weight: a rule's only */
};

struct pd_target {
	u8		kind;		/* enum pd_target_kind */
	u16		port;		/* PD_TARGET_PORT */

	/* PD_TARGET_SOCKET */
	u32		owner_fd;	/* beside the above: a word saved */
	union {
		struct sock	*sk;
		struct pd_group	*group;	/* PD_TARGET_GROUP */
	};
	struct pid	*owner;		/* the process named, for reports */
	struct pid_namespace *owner_ns;	/* whose numbering named it */
	unsigned long	ino;
	char		comm[TASK_COMM_LEN];
	/* Where it was bound when named: a closed socket forgets. */
	union pd_addr	local_addr;
	u16		local_port;
};

/* A target as a request spells it; attributes left at zero are absent. */
struct pd_target_req {
	const struct nlattr *fd_attr;
	const struct nlattr *pid_attr;
	const struct nlattr *pid_fd_attr;
	const struct nlattr *port_attr;
};

int pd_target_init(struct pd_target *target, struct net *net,
		   const struct pd_target_req *req, struct pd_key *key,
		   struct netlink_ext_ack *extack);
void pd_target_release(struct pd_target *target);
void pd_target_copy(struct pd_target *dst, const struct pd_target *src);

bool pd_target_closed(const struct pd_target *target);
u8 pd_target_state(const struct pd_target *target);

static inline bool pd_target_same(const struct pd_target *a,
				  const struct pd_target *b)
{
	if (a->kind != b->kind)
		return false;
	return a->kind == PD_TARGET_PORT ? a->port == b->port : a->sk == b->sk;
}

/* A UDP socket that can take datagrams that are not its connection's. */
static inline bool pd_udp_ready(const struct sock *sk)
{
	return !sock_flag(sk, SOCK_DEAD) && !sk_unhashed(sk) &&
	       READ_ONCE(sk->sk_state) != TCP_ESTABLISHED;
}

#endif /* _PD_TARGET_H */
