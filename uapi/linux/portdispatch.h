/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * portdispatch: a programmable port-to-socket table, driven over generic
 * netlink. This header is the whole contract between the kernel module and
 * any client; nothing else is shared.
 *
 * Family "portdispatch", version 1, network-namespace aware: every request
 * acts on the table of the requesting socket's network namespace.
 *
 * The table
 * ---------
 * A rule maps (protocol, destination port range, optional destination
 * prefix, address family) to a target. A new TCP or UDP flow to a local
 * address that matches a rule is handed to the target socket, unmodified:
 * the socket sees the address and port the client used. Packets of flows
 * that already own a socket (established, handshaking or TIME_WAIT TCP,
 * connected UDP) are never steered. Among the rules covering a port, the
 * longest matching destination prefix wins; a rule without a prefix has
 * length 0 and matches every address of its families.
 *
 * Two rules conflict when they have the same protocol, the same prefix,
 * overlapping port ranges and at least one address family in common.
 *
 * Groups
 * ------
 * A rule has 1 to 16 targets (PORTDISPATCH_A_RULE_TARGET repeated, in the
 * order given), each with a weight of 1-255 (TARGET_WEIGHT, default 1).
 * Each new flow goes to one of them, chosen by a hash of its addresses and
 * ports in proportion to the weights: every datagram of a UDP flow goes to
 * the same target while the rule is unchanged. The choice is weighted
 * rendezvous hashing, so a change of one target's weight, or its leaving,
 * moves only flows that must move: to it, or from it. A hash's seed is the
 * namespace's (random at its creation) mixed with the rule's protocol,
 * ports and prefix, so that a RULE_REPLACE keeps it. A target that cannot
 * take a flow is passed over for the next in that flow's own order; only
 * when none can does the normal lookup answer. A target may appear once.
 * Of a rule with several targets, a socket target that closes leaves it:
 * RULE_REPLACE_NTF with the targets left; the last one leaving removes the
 * rule (RULE_DEL_NTF, reason SOCKET_CLOSED), as for a rule of one target.
 * Dumps and events report each target of a rule with several, with its
 * TARGET_WEIGHT and TARGET_STATS.
 *
 * UDP replies
 * -----------
 * A UDP target bound to another port or another address than the one a
 * client sent to answers from the address and port the client used: the
 * module remembers each steered UDP flow (target socket, client address
 * and port) and rewrites the source of what that socket sends back to the
 * client, before conntrack sees it. Nothing else is rewritten: not other
 * sockets' datagrams, not TCP. A flow is forgotten after 30 s without a
 * datagram, or 120 s once it has had replies for over 2 s (conntrack's
 * UDP timeouts; module parameters udp_timeout and udp_timeout_stream), and
 * with its rule. A namespace remembers at most max_udp_flows flows (module
 * parameter); their memory is charged to the rule owner's memory cgroup.
 *
 * Permissions
 * -----------
 * Every command and the "events" group need CAP_NET_ADMIN over the user
 * namespace that owns the network namespace. The kernel never reaches into
 * another process: a socket target is named by a file descriptor of the
 * requesting process. To name another process's socket, a client first
 * takes its own copy with pidfd_getfd(2), which the kernel only allows with
 * ptrace-attach rights over that process.
 *
 * Commands (all "do" unless said otherwise)
 * --------
 * PORTDISPATCH_CMD_RULE_ADD
 *	Request: RULE_PROTO, RULE_PORT_MIN, [RULE_PORT_MAX], [RULE_FAMILY],
 *	[RULE_DST, RULE_DST_PLEN], RULE_TARGET (1-16 of them).
 *	Adds a rule. Fails with EEXIST, naming the conflicting rule, when it
 *	conflicts with one. With NLM_F_ECHO the rule is sent back as a
 *	RULE_GET message before the ack.
 * PORTDISPATCH_CMD_RULE_REPLACE
 *	As RULE_ADD, but the rules with the same protocol, port range and
 *	prefix whose families intersect the new rule's are replaced in one
 *	step: no new flow is lost or sent to the normal lookup in between.
 *	A rule is replaced whole, never split: a rule for both families
 *	replaces one rule of each, and a rule for one family replaces all of
 *	a rule for both, whose flows of the other family then go to the
 *	normal lookup. The new rule takes the RULE_ID (and the counters) of
 *	one of the rules it replaces. Creates the rule if there is none, as
 *	RULE_ADD would: never ENOENT.
 * PORTDISPATCH_CMD_RULE_DEL
 *	Request: RULE_PROTO, RULE_PORT_MIN, [RULE_PORT_MAX], [RULE_FAMILY],
 *	[RULE_DST, RULE_DST_PLEN]. Deletes the rules with exactly this
 *	protocol, range and prefix whose families intersect RULE_FAMILY
 *	(every family when absent). ENOENT when there is none.
 * PORTDISPATCH_CMD_RULE_GET (dump)
 *	Replies with one message per rule, in (protocol, port) order. A dump
 *	that spans a change of the table is flagged NLM_F_DUMP_INTR. A rule's
 *	RULE_FAMILY is the family it really serves: the request's, narrowed
 *	to what the prefix and the target socket can take; absent when it
 *	serves both. A prefix of length 0 is only a family: it is reported
 *	as RULE_FAMILY, without RULE_DST.
 * PORTDISPATCH_CMD_FLUSH
 *	Deletes every rule of the namespace.
 * PORTDISPATCH_CMD_STATS_GET
 *	Replies with the namespace's counters (the NS_STATS attributes).
 * PORTDISPATCH_CMD_BATCH_BEGIN / _COMMIT / _ABORT
 *	Open, apply or drop a batch. While the requesting socket has a batch
 *	open, its RULE_ADD, RULE_REPLACE, RULE_DEL and FLUSH are checked at
 *	once, against the table as the batch's earlier commands leave it (so
 *	FLUSH then RULE_ADD works), and fail at once with their own error;
 *	they take effect only at COMMIT, all together: packets see the table
 *	before or after the whole batch, never in between. If any command of
 *	the batch failed, COMMIT fails with EINVAL and applies nothing (with
 *	ENOMEM if one failed for memory: the batch's staged changes are then
 *	given back at once, and its later commands fail with ENOMEM). COMMIT
 *	and ABORT close the batch, whether they succeed or not. A namespace
 *	has at most one open batch: changes from other sockets fail with
 *	EBUSY meanwhile. Closing the socket aborts its batch. A batch whose
 *	socket sends nothing for the module parameter batch_idle_ms is
 *	dropped: every change, BEGIN, COMMIT or ABORT the socket sends next
 *	fails with ETIMEDOUT, and BEGIN, COMMIT or ABORT also clear the
 *	notice. Batches do not nest. Dumps show the table packets see,
 *	without the open batch.
 *
 * Events (multicast group "events")
 * ------
 * Rules are known by RULE_ID. A listener that applies the events in order
 * to the table it started from holds the table a dump shows after them:
 * PORTDISPATCH_CMD_RULE_ADD_NTF: a new rule, as in a dump, under a RULE_ID
 *	no rule of the table has. A RULE_REPLACE that replaced nothing
 *	sends this.
 * PORTDISPATCH_CMD_RULE_REPLACE_NTF: the rule, as in a dump, that took
 *	the place of the rule with its RULE_ID. Each other rule the same
 *	RULE_REPLACE removed gets a RULE_DEL_NTF (reason REPLACED) first.
 * PORTDISPATCH_CMD_RULE_DEL_NTF: the rule that left, and RULE_REASON (no
 *	other event carries RULE_REASON).
 * PORTDISPATCH_CMD_FLUSH_NTF: RULE_COUNT, the number of rules removed:
 *	all of them.
 * A batch's events are sent when it commits, in the order of its commands.
 * An event has no reader to number a process for: its TARGET_PID is as the
 * process that added the rule numbered it (dumps use the reader's pid
 * namespace). A listener that falls behind gets ENOBUFS on its socket.
 *
 * Errors
 * ------
 * Every refusal carries an extended-ack message meant for people, and
 * points at the offending attribute where there is one.
 *	EINVAL		malformed or contradictory request
 *	EEXIST		conflicts with an existing rule (RULE_ADD)
 *	ENOENT		no such rule (RULE_DEL)
 *	ENOSPC		the namespace's table is full (module parameter
 *			max_rules), or the host's (max_rules_total)
 *	ENOMEM		out of memory; what a request allocates is charged
 *			to the requester's memory cgroup
 *	EBUSY		another socket's batch is open
 *	ETIMEDOUT	the socket's batch was dropped for idling
 *	EBADF, ENOTSOCK	RULE_TARGET_FD is not an open fd / not a socket
 *	ESRCH		TARGET_PID names no process
 *	EPROTOTYPE	the socket's protocol is not the rule's
 *	EAFNOSUPPORT	the socket cannot take the rule's address family
 *	EADDRNOTAVAIL	the socket is not listening (TCP) or not bound (UDP)
 *	EXDEV		the socket lives in another network namespace
 */
#ifndef _UAPI_LINUX_PORTDISPATCH_H
#define _UAPI_LINUX_PORTDISPATCH_H

#define PORTDISPATCH_FAMILY_NAME	"portdispatch"
#define PORTDISPATCH_FAMILY_VERSION	1
#define PORTDISPATCH_MCGRP_EVENTS	"events"

enum portdispatch_del_reason {
	PORTDISPATCH_DEL_REASON_UNSPEC,
	PORTDISPATCH_DEL_REASON_REQUEST,	/* RULE_DEL, alone or in a batch */
	PORTDISPATCH_DEL_REASON_SOCKET_CLOSED,	/* its target socket closed */
	PORTDISPATCH_DEL_REASON_REPLACED,	/* a RULE_REPLACE took its place
						 * and another rule's, and kept
						 * the other's RULE_ID
						 */
};

/* What a socket target is doing, as reported in dumps and events. */
enum portdispatch_sock_state {
	PORTDISPATCH_SOCK_STATE_UNSPEC,
	PORTDISPATCH_SOCK_STATE_LISTENING,	/* TCP, accepting connections */
	PORTDISPATCH_SOCK_STATE_BOUND,		/* UDP, receiving datagrams */
	PORTDISPATCH_SOCK_STATE_NOT_READY,	/* open, but cannot take flows */
	PORTDISPATCH_SOCK_STATE_CLOSED,		/* gone; the rule is going too */
};

/* Attributes of a rule: requests, dumps and events. */
enum {
	PORTDISPATCH_A_RULE_UNSPEC,
	PORTDISPATCH_A_RULE_PAD,
	PORTDISPATCH_A_RULE_ID,		/* u32, assigned by the kernel */
	PORTDISPATCH_A_RULE_PROTO,	/* u8, IPPROTO_TCP or IPPROTO_UDP */
	PORTDISPATCH_A_RULE_PORT_MIN,	/* u32, 1-65535 */
	PORTDISPATCH_A_RULE_PORT_MAX,	/* u32, PORT_MIN-65535; default PORT_MIN */
	PORTDISPATCH_A_RULE_FAMILY,	/* u8, AF_INET or AF_INET6; absent:
					 * every family the target accepts
					 */
	PORTDISPATCH_A_RULE_DST,	/* binary, 4 or 16 bytes, network order;
					 * not IPv4-mapped (in ::ffff:0:0/96):
					 * IPv4 is matched by its 4 bytes
					 */
	PORTDISPATCH_A_RULE_DST_PLEN,	/* u8, prefix length of RULE_DST */
	PORTDISPATCH_A_RULE_TARGET,	/* nest of TARGET attributes; 1-16
					 * of them: see Groups
					 */
	PORTDISPATCH_A_RULE_STATS,	/* nest, PORTDISPATCH_A_RULE_STATS_* */
	PORTDISPATCH_A_RULE_REASON,	/* u8, enum portdispatch_del_reason */
	PORTDISPATCH_A_RULE_COUNT,	/* u32, rules removed (FLUSH_NTF) */

	__PORTDISPATCH_A_RULE_MAX,
	PORTDISPATCH_A_RULE_MAX = __PORTDISPATCH_A_RULE_MAX - 1
};

/*
 * A target is either a socket (TARGET_FD, with TARGET_PID and TARGET_PID_FD
 * naming where it came from) or a local port (TARGET_PORT): whichever socket
 * listens (TCP) or is bound (UDP) on that port, at the destination address,
 * when a new flow arrives. TARGET_WEIGHT goes with either; the other
 * attributes are reported, not accepted.
 */
enum {
	PORTDISPATCH_A_TARGET_UNSPEC,
	PORTDISPATCH_A_TARGET_PAD,
	PORTDISPATCH_A_TARGET_FD,	/* u32, fd of the requesting process */
	PORTDISPATCH_A_TARGET_PID,	/* u32, process the socket belongs to */
	PORTDISPATCH_A_TARGET_PID_FD,	/* u32, its fd number in that process */
	PORTDISPATCH_A_TARGET_PORT,	/* u32, 1-65535 */
	PORTDISPATCH_A_TARGET_COMM,	/* string, command name of TARGET_PID */
	PORTDISPATCH_A_TARGET_INODE,	/* u64, the socket's inode number */
	PORTDISPATCH_A_TARGET_STATE,	/* u8, enum portdispatch_sock_state */
	PORTDISPATCH_A_TARGET_FAMILY,	/* u8, the socket's family */
	PORTDISPATCH_A_TARGET_V6ONLY,	/* flag, IPv6 socket refusing IPv4 */
	PORTDISPATCH_A_TARGET_LOCAL_ADDR, /* binary, 4 or 16 bytes */
	PORTDISPATCH_A_TARGET_LOCAL_PORT, /* u32, the socket's own port */
	PORTDISPATCH_A_TARGET_WEIGHT,	/* u32, 1-255, default 1: its share
					 * of the rule's new flows
					 */
	PORTDISPATCH_A_TARGET_STATS,	/* nest of RULE_STATS attributes: this
					 * target's, in a rule of several
					 */

	__PORTDISPATCH_A_TARGET_MAX,
	PORTDISPATCH_A_TARGET_MAX = __PORTDISPATCH_A_TARGET_MAX - 1
};

/*
 * Per-rule counters, in dumps. Only new flows are counted: a TCP SYN (a
 * connection answered with a SYN cookie counts once), a UDP datagram that
 * no socket owns; not a segment that outlived its connection. Of one
 * target of several (TARGET_STATS): STEERED, the flows it took;
 * UNDELIVERABLE, flows that chose it first but that it could not take,
 * passed over to the next target; no REPLIES, which the rule counts.
 */
enum {
	PORTDISPATCH_A_RULE_STATS_UNSPEC,
	PORTDISPATCH_A_RULE_STATS_PAD,
	PORTDISPATCH_A_RULE_STATS_STEERED,	 /* u64, handed to the target */
	PORTDISPATCH_A_RULE_STATS_UNDELIVERABLE, /* u64, matched, but the
						  * target could not take it:
						  * left to the normal lookup
						  */
	PORTDISPATCH_A_RULE_STATS_REPLIES,	 /* u64, UDP datagrams the
						  * target sent back that
						  * left from the address and
						  * port the client used
						  */

	__PORTDISPATCH_A_RULE_STATS_MAX,
	PORTDISPATCH_A_RULE_STATS_MAX = __PORTDISPATCH_A_RULE_STATS_MAX - 1
};

/* Namespace counters (STATS_GET). lookups == hits + misses. */
enum {
	PORTDISPATCH_A_NS_STATS_UNSPEC,
	PORTDISPATCH_A_NS_STATS_PAD,
	PORTDISPATCH_A_NS_STATS_LOOKUPS,	/* u64, packets that consulted
						 * the table
						 */
	PORTDISPATCH_A_NS_STATS_HITS,		/* u64, ... and a rule covered */
	PORTDISPATCH_A_NS_STATS_MISSES,		/* u64, ... and none did */
	PORTDISPATCH_A_NS_STATS_RULES,		/* u32, rules in the table */
	PORTDISPATCH_A_NS_STATS_MAX_RULES,	/* u32, the table's limit */
	PORTDISPATCH_A_NS_STATS_UDP_FLOWS,	/* u32, steered UDP flows whose
						 * replies are rewritten
						 */
	PORTDISPATCH_A_NS_STATS_MAX_UDP_FLOWS,	/* u32, their limit */
	PORTDISPATCH_A_NS_STATS_UDP_FLOWS_MISSED, /* u64, steered UDP flows
						   * not remembered: the
						   * limit, or memory
						   */

	__PORTDISPATCH_A_NS_STATS_MAX,
	PORTDISPATCH_A_NS_STATS_MAX = __PORTDISPATCH_A_NS_STATS_MAX - 1
};

enum {
	PORTDISPATCH_CMD_UNSPEC,
	PORTDISPATCH_CMD_RULE_ADD,
	PORTDISPATCH_CMD_RULE_REPLACE,
	PORTDISPATCH_CMD_RULE_DEL,
	PORTDISPATCH_CMD_RULE_GET,
	PORTDISPATCH_CMD_FLUSH,
	PORTDISPATCH_CMD_STATS_GET,
	PORTDISPATCH_CMD_BATCH_BEGIN,
	PORTDISPATCH_CMD_BATCH_COMMIT,
	PORTDISPATCH_CMD_BATCH_ABORT,
	PORTDISPATCH_CMD_RULE_ADD_NTF,
	PORTDISPATCH_CMD_RULE_REPLACE_NTF,
	PORTDISPATCH_CMD_RULE_DEL_NTF,
	PORTDISPATCH_CMD_FLUSH_NTF,

	__PORTDISPATCH_CMD_MAX,
	PORTDISPATCH_CMD_MAX = __PORTDISPATCH_CMD_MAX - 1
};

#endif /* _UAPI_LINUX_PORTDISPATCH_H */
