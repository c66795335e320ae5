/* SPDX-License-Identifier: GPL-2.0 */
/*
 * portdispatch's generic netlink family spoken directly with libmnl, for
 * netlink_test.c and reply_test.c (never through portctl): resolve the
 * family and its "events" group through nlctrl, build requests while
 * remembering where each attribute went (so that an extended ack's
 * NLMSGERR_ATTR_OFFS can be checked against the attribute that was
 * meant), and read acks with their extended-ack TLVs, dumps (with each
 * rule's counters), echoes, events and the namespace's counters.
 *
 * Everything is static: the test program includes this once.
 */
#ifndef _PD_NETLINK_HELPERS_H
#define _PD_NETLINK_HELPERS_H

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/portdispatch.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pd_test.h"

/* A dump datagram is at most 32 KiB; leave room. */
#define PDN_RX_SIZE	(64 * 1024)
#define PDN_REQ_SIZE	1024
/* Attribute types whose place in a request is remembered. */
#define PDN_NTYPES	256
/* How long an answer to a request may take under TCG, on this kernel. */
#define PDN_TIMEOUT_MS	pd_ms(10000)

/* One generic netlink socket of the test. */
struct pdn {
	struct mnl_socket *sock;
	int fd;
	uint32_t portid;
	uint32_t seq;
	uint16_t family;	/* portdispatch's id */
	uint32_t events_group;	/* 0: none advertised */
	char *rx;		/* the last datagram read */
	size_t rx_len, rx_pos;	/* its length; the next unread message */
	unsigned int datagrams;	/* datagrams read so far */
};

/* A request being built, and where its attributes went. */
struct pdn_req {
	char buf[PDN_REQ_SIZE];
	struct nlmsghdr *nlh;
	struct nlattr *nest;		/* RULE_TARGET while it is open */
	uint32_t top[PDN_NTYPES];	/* offset of each top-level attribute */
	uint32_t tgt[PDN_NTYPES];	/* ... and of each one in RULE_TARGET */
};

/* A rule has at most this many targets (RULE_TARGET nests). */
#define PDN_MAX_TARGETS	16

/* One RULE_TARGET nest, as the kernel sent it. */
struct pdn_target {
	uint32_t seen;		/* bit n: PORTDISPATCH_A_TARGET_n was there */
	uint32_t fd, pid, pid_fd, port;
	char comm[32];
	uint64_t inode;
	uint8_t state, family;
	bool v6only;
	uint8_t local_addr[16];
	unsigned int local_addr_len;
	uint32_t local_port;
	uint32_t weight;
	/* TARGET_STATS, of one target of several: bit n: RULE_STATS_n */
	uint32_t sseen;
	uint64_t steered, undeliverable, replies;
};

/* A rule (dumps, echoes, events) or a FLUSH_NTF, as the kernel sent it. */
struct pdn_rule {
	uint8_t cmd;
	uint16_t nlflags;
	uint32_t seq;
	unsigned int dgram;	/* pdn.datagrams when it was read */
	bool malformed;		/* an attribute of the wrong size */
	uint32_t seen;		/* bit n: PORTDISPATCH_A_RULE_n was there */
	uint32_t tseen;		/* bit n: PORTDISPATCH_A_TARGET_n was there,
				 * in the first RULE_TARGET
				 */
	uint32_t id;
	uint8_t proto;
	uint32_t port_min, port_max;
	uint8_t family;
	uint8_t dst[16];
	unsigned int dst_len;
	uint8_t plen;
	uint8_t reason;
	uint32_t count;
	uint32_t sseen;		/* bit n: PORTDISPATCH_A_RULE_STATS_n was there */
	uint64_t steered, undeliverable, replies;
	struct pdn_target t;	/* the first target: a rule's only one, mostly */
	unsigned int ntargets;	/* RULE_TARGET nests, in the order sent */
	struct pdn_target m[PDN_MAX_TARGETS];	/* the first PDN_MAX_TARGETS */
};

#define PDN_HAS(r, a)	(!!((r)->seen & (1u << (a))))
#define PDN_THAS(r, a)	(!!((r)->tseen & (1u << (a))))
#define PDN_SHAS(r, a)	(!!((r)->sseen & (1u << (a))))

/* What the kernel answered to one request. */
struct pdn_status {
	uint32_t seq;
	int err;		/* positive errno; 0: acked */
	bool local;		/* err is ours (no answer), not the kernel's */
	char msg[256];		/* NLMSGERR_ATTR_MSG, "" when none */
	bool has_offs;
	uint32_t offs;		/* NLMSGERR_ATTR_OFFS */
	bool has_miss;
	uint32_t miss_type;	/* NLMSGERR_ATTR_MISS_TYPE */
	bool has_miss_nest;
	uint32_t miss_nest;	/* NLMSGERR_ATTR_MISS_NEST */
	unsigned int replies;	/* messages of the family before the ack */
	struct pdn_rule reply;	/* the first of them */
	unsigned int stray;	/* messages for another request */
};

/* A whole dump, or the part of one read so far. */
struct pdn_dump {
	uint32_t seq;
	struct pdn_rule *rules;
	unsigned int count, cap;
	unsigned int datagrams;		/* datagrams it came in */
	unsigned int first_dgram;	/* pdn.datagrams of its first one */
	unsigned int last_dgram;
	unsigned int intr_dgram;	/* first datagram (1-based) flagged
					 * NLM_F_DUMP_INTR; 0: none
					 */
	unsigned int not_multi;		/* rule messages without NLM_F_MULTI */
	unsigned int stray;
	bool done;			/* NLMSG_DONE or an error arrived */
	int err;			/* positive errno of the dump */
	char msg[256];
};

/* ---- reading ---------------------------------------------------------- */

/*
 * The next message from the kernel within @ms milliseconds, or NULL with
 * errno (ETIMEDOUT when nothing came). The message stays valid until the
 * next call.
 */
static const struct nlmsghdr *pdn_next(struct pdn *n, int ms)
{
	const struct nlmsghdr *nlh;

	while (n->rx_pos >= n->rx_len) {
		struct pollfd p = { .fd = n->fd, .events = POLLIN };
		struct sockaddr_nl sa;
		socklen_t salen = sizeof(sa);
		ssize_t len;
		int ret;

		ret = poll(&p, 1, ms);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0) {
			if (!ret)
				errno = ETIMEDOUT;
			return NULL;
		}
		len = recvfrom(n->fd, n->rx, PDN_RX_SIZE, MSG_DONTWAIT | MSG_TRUNC,
			       (struct sockaddr *)&sa, &salen);
		if (len < 0)
			return NULL;
		if (len > PDN_RX_SIZE) {
			errno = EMSGSIZE;
			return NULL;
		}
		if (sa.nl_pid)		/* only the kernel talks to us */
			continue;
		n->rx_len = len;
		n->rx_pos = 0;
		n->datagrams++;
	}
	nlh = (const void *)(n->rx + n->rx_pos);
	if (!mnl_nlmsg_ok(nlh, (int)(n->rx_len - n->rx_pos))) {
		n->rx_len = n->rx_pos = 0;
		errno = EBADMSG;
		return NULL;
	}
	n->rx_pos += NLMSG_ALIGN(nlh->nlmsg_len);
	return nlh;
}

/* Is a message waiting, or does one arrive within @ms? */
static bool pdn_pending(struct pdn *n, int ms)
{
	struct pollfd p = { .fd = n->fd, .events = POLLIN };

	if (n->rx_pos < n->rx_len)
		return true;
	return poll(&p, 1, ms) == 1;
}

static void pdn_stats_attr(const struct nlattr *a, uint32_t *sseen,
			   uint64_t *steered, uint64_t *undeliverable,
			   uint64_t *replies, bool *malformed)
{
	uint16_t type = mnl_attr_get_type(a);
	uint64_t v;

	switch (type) {
	case PORTDISPATCH_A_RULE_STATS_STEERED:
	case PORTDISPATCH_A_RULE_STATS_UNDELIVERABLE:
	case PORTDISPATCH_A_RULE_STATS_REPLIES:
		break;
	default:
		return;		/* PAD, or newer than this test */
	}
	if (mnl_attr_validate(a, MNL_TYPE_U64) < 0) {
		*malformed = true;
		return;
	}
	*sseen |= 1u << type;
	v = mnl_attr_get_u64(a);
	if (type == PORTDISPATCH_A_RULE_STATS_STEERED)
		*steered = v;
	else if (type == PORTDISPATCH_A_RULE_STATS_UNDELIVERABLE)
		*undeliverable = v;
	else
		*replies = v;
}

/* One attribute of a RULE_TARGET nest into @t. */
static void pdn_target_attr(const struct nlattr *a, struct pdn_target *t,
			    bool *malformed)
{
	uint16_t type = mnl_attr_get_type(a);
	static const enum mnl_attr_data_type types[] = {
		[PORTDISPATCH_A_TARGET_FD]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_TARGET_PID]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_TARGET_PID_FD]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_TARGET_PORT]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_TARGET_COMM]	= MNL_TYPE_NUL_STRING,
		[PORTDISPATCH_A_TARGET_INODE]	= MNL_TYPE_U64,
		[PORTDISPATCH_A_TARGET_STATE]	= MNL_TYPE_U8,
		[PORTDISPATCH_A_TARGET_FAMILY]	= MNL_TYPE_U8,
		[PORTDISPATCH_A_TARGET_V6ONLY]	= MNL_TYPE_FLAG,
		[PORTDISPATCH_A_TARGET_LOCAL_ADDR] = MNL_TYPE_BINARY,
		[PORTDISPATCH_A_TARGET_LOCAL_PORT] = MNL_TYPE_U32,
		[PORTDISPATCH_A_TARGET_WEIGHT]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_TARGET_STATS]	= MNL_TYPE_NESTED,
	};
	const struct nlattr *s;

	if (type >= sizeof(types) / sizeof(types[0]) || !types[type])
		return;		/* PAD, or newer than this test */
	if (mnl_attr_validate(a, types[type]) < 0) {
		*malformed = true;
		return;
	}
	t->seen |= 1u << type;
	switch (type) {
	case PORTDISPATCH_A_TARGET_FD:
		t->fd = mnl_attr_get_u32(a);
		break;
	case PORTDISPATCH_A_TARGET_PID:
		t->pid = mnl_attr_get_u32(a);
		break;
	case PORTDISPATCH_A_TARGET_PID_FD:
		t->pid_fd = mnl_attr_get_u32(a);
		break;
	case PORTDISPATCH_A_TARGET_PORT:
		t->port = mnl_attr_get_u32(a);
		break;
	case PORTDISPATCH_A_TARGET_COMM:
		snprintf(t->comm, sizeof(t->comm), "%s",
			 mnl_attr_get_str(a));
		break;
	case PORTDISPATCH_A_TARGET_INODE:
		t->inode = mnl_attr_get_u64(a);
		break;
	case PORTDISPATCH_A_TARGET_STATE:
		t->state = mnl_attr_get_u8(a);
		break;
	case PORTDISPATCH_A_TARGET_FAMILY:
		t->family = mnl_attr_get_u8(a);
		break;
	case PORTDISPATCH_A_TARGET_V6ONLY:
		t->v6only = true;
		break;
	case PORTDISPATCH_A_TARGET_LOCAL_ADDR:
		t->local_addr_len = mnl_attr_get_payload_len(a);
		if (t->local_addr_len != 4 && t->local_addr_len != 16) {
			*malformed = true;
			break;
		}
		memcpy(t->local_addr, mnl_attr_get_payload(a),
		       t->local_addr_len);
		break;
	case PORTDISPATCH_A_TARGET_LOCAL_PORT:
		t->local_port = mnl_attr_get_u32(a);
		break;
	case PORTDISPATCH_A_TARGET_WEIGHT:
		t->weight = mnl_attr_get_u32(a);
		break;
	case PORTDISPATCH_A_TARGET_STATS:
		mnl_attr_for_each_nested(s, a)
			pdn_stats_attr(s, &t->sseen, &t->steered,
				       &t->undeliverable, &t->replies,
				       malformed);
		break;
	}
}

/* A RULE_TARGET nest: the rule's first into r->t, each into r->m[]. */
static void pdn_rule_target(const struct nlattr *nest, struct pdn_rule *r)
{
	struct pdn_target t = { 0 };
	const struct nlattr *a;

	mnl_attr_for_each_nested(a, nest)
		pdn_target_attr(a, &t, &r->malformed);
	if (!r->ntargets) {
		r->t = t;
		r->tseen = t.seen;
	}
	if (r->ntargets < PDN_MAX_TARGETS)
		r->m[r->ntargets] = t;
	r->ntargets++;
}

/* A message of the family: a rule, or a FLUSH_NTF. */
static void pdn_parse_rule(const struct nlmsghdr *nlh, unsigned int dgram,
			   struct pdn_rule *r)
{
	static const enum mnl_attr_data_type types[] = {
		[PORTDISPATCH_A_RULE_ID]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_RULE_PROTO]	= MNL_TYPE_U8,
		[PORTDISPATCH_A_RULE_PORT_MIN]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_RULE_PORT_MAX]	= MNL_TYPE_U32,
		[PORTDISPATCH_A_RULE_FAMILY]	= MNL_TYPE_U8,
		[PORTDISPATCH_A_RULE_DST]	= MNL_TYPE_BINARY,
		[PORTDISPATCH_A_RULE_DST_PLEN]	= MNL_TYPE_U8,
		[PORTDISPATCH_A_RULE_TARGET]	= MNL_TYPE_NESTED,
		[PORTDISPATCH_A_RULE_STATS]	= MNL_TYPE_NESTED,
		[PORTDISPATCH_A_RULE_REASON]	= MNL_TYPE_U8,
		[PORTDISPATCH_A_RULE_COUNT]	= MNL_TYPE_U32,
	};
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a, *t;

	memset(r, 0, sizeof(*r));
	r->nlflags = nlh->nlmsg_flags;
	r->seq = nlh->nlmsg_seq;
	r->dgram = dgram;
	if (nlh->nlmsg_len < mnl_nlmsg_size(GENL_HDRLEN)) {
		r->malformed = true;
		return;
	}
	r->cmd = g->cmd;

	mnl_attr_for_each(a, nlh, GENL_HDRLEN) {
		uint16_t type = mnl_attr_get_type(a);

		if (type >= sizeof(types) / sizeof(types[0]) || !types[type])
			continue;
		if (mnl_attr_validate(a, types[type]) < 0) {
			r->malformed = true;
			continue;
		}
		r->seen |= 1u << type;
		switch (type) {
		case PORTDISPATCH_A_RULE_ID:
			r->id = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_RULE_PROTO:
			r->proto = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_PORT_MIN:
			r->port_min = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_RULE_PORT_MAX:
			r->port_max = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_RULE_FAMILY:
			r->family = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_DST:
			r->dst_len = mnl_attr_get_payload_len(a);
			if (r->dst_len != 4 && r->dst_len != 16) {
				r->malformed = true;
				break;
			}
			memcpy(r->dst, mnl_attr_get_payload(a), r->dst_len);
			break;
		case PORTDISPATCH_A_RULE_DST_PLEN:
			r->plen = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_TARGET:
			pdn_rule_target(a, r);
			break;
		case PORTDISPATCH_A_RULE_STATS:
			mnl_attr_for_each_nested(t, a)
				pdn_stats_attr(t, &r->sseen, &r->steered,
					       &r->undeliverable, &r->replies,
					       &r->malformed);
			break;
		case PORTDISPATCH_A_RULE_REASON:
			r->reason = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_COUNT:
			r->count = mnl_attr_get_u32(a);
			break;
		}
	}
}

/* NLMSG_ERROR or NLMSG_DONE: the errno and the extended ack. */
static void pdn_parse_status(const struct nlmsghdr *nlh, struct pdn_status *st)
{
	const struct nlattr *a;
	size_t off;

	if (nlh->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

		if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e))) {
			st->err = EBADMSG;
			st->local = true;
			return;
		}
		st->err = -e->error;
		off = sizeof(*e);
		if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
			off += e->msg.nlmsg_len - sizeof(e->msg);
	} else {
		int err = 0;

		if (nlh->nlmsg_len >= mnl_nlmsg_size(sizeof(err)))
			memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
		st->err = -err;
		off = sizeof(err);
	}
	off = MNL_ALIGN(off);
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) ||
	    mnl_nlmsg_size(off) >= nlh->nlmsg_len)
		return;

	mnl_attr_for_each(a, nlh, off) {
		switch (mnl_attr_get_type(a)) {
		case NLMSGERR_ATTR_MSG:
			if (!mnl_attr_validate(a, MNL_TYPE_NUL_STRING))
				snprintf(st->msg, sizeof(st->msg), "%s",
					 mnl_attr_get_str(a));
			break;
		case NLMSGERR_ATTR_OFFS:
			if (!mnl_attr_validate(a, MNL_TYPE_U32)) {
				st->has_offs = true;
				st->offs = mnl_attr_get_u32(a);
			}
			break;
		case NLMSGERR_ATTR_MISS_TYPE:
			if (!mnl_attr_validate(a, MNL_TYPE_U32)) {
				st->has_miss = true;
				st->miss_type = mnl_attr_get_u32(a);
			}
			break;
		case NLMSGERR_ATTR_MISS_NEST:
			if (!mnl_attr_validate(a, MNL_TYPE_U32)) {
				st->has_miss_nest = true;
				st->miss_nest = mnl_attr_get_u32(a);
			}
			break;
		}
	}
}

/*
 * Reads up to the answer to request @seq: its replies, then its ack or
 * error. Returns the positive errno (0: acked).
 */
static int pdn_wait(struct pdn *n, uint32_t seq, struct pdn_status *st)
{
	memset(st, 0, sizeof(*st));
	st->seq = seq;
	for (;;) {
		const struct nlmsghdr *nlh = pdn_next(n, PDN_TIMEOUT_MS);

		if (!nlh) {
			st->err = errno;
			st->local = true;
			snprintf(st->msg, sizeof(st->msg),
				 "(no answer from the kernel: %s)",
				 strerror(errno));
			return st->err;
		}
		if (nlh->nlmsg_seq != seq) {
			st->stray++;
			continue;
		}
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			pdn_parse_status(nlh, st);
			return st->err;
		}
		if (nlh->nlmsg_type != n->family) {
			st->stray++;
			continue;
		}
		if (!st->replies)
			pdn_parse_rule(nlh, n->datagrams, &st->reply);
		st->replies++;
	}
}

/* ---- requests --------------------------------------------------------- */

static void pdn_req_init(struct pdn *n, struct pdn_req *r, uint8_t cmd,
			 uint16_t flags)
{
	struct genlmsghdr *g;

	memset(r, 0, sizeof(*r));	/* no garbage in attribute padding */
	r->nlh = mnl_nlmsg_put_header(r->buf);
	r->nlh->nlmsg_type = n->family;
	r->nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	r->nlh->nlmsg_seq = ++n->seq;
	g = mnl_nlmsg_put_extra_header(r->nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = PORTDISPATCH_FAMILY_VERSION;
}

static struct genlmsghdr *pdn_req_genl(struct pdn_req *r)
{
	return mnl_nlmsg_get_payload(r->nlh);
}

/* Where the next attribute goes, from the start of the message. */
static uint32_t pdn_req_tail(struct pdn_req *r)
{
	return (char *)mnl_nlmsg_get_payload_tail(r->nlh) - r->buf;
}

static void pdn_put(struct pdn_req *r, uint16_t type, size_t len,
		    const void *data)
{
	uint32_t *where = r->nest ? r->tgt : r->top;

	if (type < PDN_NTYPES)
		where[type] = pdn_req_tail(r);
	mnl_attr_put(r->nlh, type, len, data);
}

static void pdn_put_u8(struct pdn_req *r, uint16_t type, uint8_t v)
{
	pdn_put(r, type, sizeof(v), &v);
}

static void pdn_put_u16(struct pdn_req *r, uint16_t type, uint16_t v)
{
	pdn_put(r, type, sizeof(v), &v);
}

static void pdn_put_u32(struct pdn_req *r, uint16_t type, uint32_t v)
{
	pdn_put(r, type, sizeof(v), &v);
}

static void pdn_put_str(struct pdn_req *r, uint16_t type, const char *s)
{
	pdn_put(r, type, strlen(s) + 1, s);
}

static void pdn_target_start(struct pdn_req *r)
{
	r->top[PORTDISPATCH_A_RULE_TARGET] = pdn_req_tail(r);
	r->nest = mnl_attr_nest_start(r->nlh, PORTDISPATCH_A_RULE_TARGET);
}

static void pdn_target_end(struct pdn_req *r)
{
	mnl_attr_nest_end(r->nlh, r->nest);
	r->nest = NULL;
}

/* RULE_PROTO, RULE_PORT_MIN and, unless @port_max is 0, RULE_PORT_MAX. */
static void pdn_rule_key(struct pdn_req *r, uint8_t proto, uint32_t port_min,
			 uint32_t port_max)
{
	pdn_put_u8(r, PORTDISPATCH_A_RULE_PROTO, proto);
	pdn_put_u32(r, PORTDISPATCH_A_RULE_PORT_MIN, port_min);
	if (port_max)
		pdn_put_u32(r, PORTDISPATCH_A_RULE_PORT_MAX, port_max);
}

/* RULE_DST and RULE_DST_PLEN from "ADDR/PLEN", IPv4 or IPv6. */
static void pdn_rule_dst(struct pdn_req *r, const char *prefix)
{
	char addr[64];
	uint8_t bin[16];
	const char *slash = strchr(prefix, '/');
	int family = strchr(prefix, ':') ? AF_INET6 : AF_INET;

	snprintf(addr, sizeof(addr), "%.*s", (int)(slash - prefix), prefix);
	inet_pton(family, addr, bin);
	pdn_put(r, PORTDISPATCH_A_RULE_DST, family == AF_INET ? 4 : 16, bin);
	pdn_put_u8(r, PORTDISPATCH_A_RULE_DST_PLEN, atoi(slash + 1));
}

static void pdn_target_port(struct pdn_req *r, uint32_t port)
{
	pdn_target_start(r);
	pdn_put_u32(r, PORTDISPATCH_A_TARGET_PORT, port);
	pdn_target_end(r);
}

static void pdn_target_fd(struct pdn_req *r, uint32_t fd)
{
	pdn_target_start(r);
	pdn_put_u32(r, PORTDISPATCH_A_TARGET_FD, fd);
	pdn_target_end(r);
}

/*
 * One target of a rule, for rules of several: a socket of this process
 * (@fd) or, when @port is not 0, a port; with a TARGET_WEIGHT unless
 * @weight is 0 (the kernel's default, 1, then).
 */
struct pdn_member {
	int fd;
	uint16_t port;
	uint32_t weight;
};

static inline void pdn_target_member(struct pdn_req *r,
				     const struct pdn_member *m)
{
	pdn_target_start(r);
	if (m->port)
		pdn_put_u32(r, PORTDISPATCH_A_TARGET_PORT, m->port);
	else
		pdn_put_u32(r, PORTDISPATCH_A_TARGET_FD, m->fd);
	if (m->weight)
		pdn_put_u32(r, PORTDISPATCH_A_TARGET_WEIGHT, m->weight);
	pdn_target_end(r);
}

static int pdn_send(struct pdn *n, const struct pdn_req *r)
{
	ssize_t len = mnl_socket_sendto(n->sock, r->nlh, r->nlh->nlmsg_len);

	if (len < 0)
		return -errno;
	return len == (ssize_t)r->nlh->nlmsg_len ? 0 : -EMSGSIZE;
}

/* Sends @r asking for an ack, and reads the answer into @st; its errno. */
static int pdn_do(struct pdn *n, struct pdn_req *r, struct pdn_status *st)
{
	int err;

	r->nlh->nlmsg_flags |= NLM_F_ACK;
	err = pdn_send(n, r);
	if (err) {
		memset(st, 0, sizeof(*st));
		st->err = -err;
		st->local = true;
		return st->err;
	}
	return pdn_wait(n, r->nlh->nlmsg_seq, st);
}

/* A command without attributes (FLUSH, STATS_GET, BATCH_*). */
static int pdn_cmd(struct pdn *n, uint8_t cmd, struct pdn_status *st)
{
	struct pdn_req r;

	pdn_req_init(n, &r, cmd, 0);
	return pdn_do(n, &r, st);
}

/* RULE_ADD (or another command) of PROTO PORT[-PORT_MAX] to port TPORT. */
static int pdn_rule_to_port(struct pdn *n, uint8_t cmd, uint8_t proto,
			    uint32_t port_min, uint32_t port_max,
			    uint32_t tport, struct pdn_status *st)
{
	struct pdn_req r;

	pdn_req_init(n, &r, cmd, 0);
	pdn_rule_key(&r, proto, port_min, port_max);
	pdn_target_port(&r, tport);
	return pdn_do(n, &r, st);
}

static int pdn_rule_to_fd(struct pdn *n, uint8_t cmd, uint8_t proto,
			  uint32_t port, int fd, struct pdn_status *st)
{
	struct pdn_req r;

	pdn_req_init(n, &r, cmd, 0);
	pdn_rule_key(&r, proto, port, 0);
	pdn_target_fd(&r, fd);
	return pdn_do(n, &r, st);
}

/* RULE_ADD (or REPLACE) of PROTO PORT to @count targets, in that order. */
static inline int pdn_rule_members(struct pdn *n, uint8_t cmd,
				   uint8_t proto, uint32_t port,
				   const struct pdn_member *m,
				   unsigned int count, struct pdn_status *st)
{
	struct pdn_req r;
	unsigned int i;

	pdn_req_init(n, &r, cmd, 0);
	pdn_rule_key(&r, proto, port, 0);
	for (i = 0; i < count; i++)
		pdn_target_member(&r, &m[i]);
	return pdn_do(n, &r, st);
}

static int pdn_del(struct pdn *n, uint8_t proto, uint32_t port_min,
		   uint32_t port_max, struct pdn_status *st)
{
	struct pdn_req r;

	pdn_req_init(n, &r, PORTDISPATCH_CMD_RULE_DEL, 0);
	pdn_rule_key(&r, proto, port_min, port_max);
	return pdn_do(n, &r, st);
}

/*
 * Adds @count port-target rules PROTO[i] PORT[i] to TPORT in one batch
 * (one commit: thousands of single commits are slow on debug kernels),
 * many requests per datagram, each acked. Returns 0, or the first errno
 * with the index of the rule in *@failed (@count: the COMMIT).
 */
static int pdn_add_many(struct pdn *n, const uint8_t *proto,
			const uint16_t *port, unsigned int count,
			uint32_t tport, unsigned int *failed)
{
	enum { CHUNK = 64 };
	static char buf[CHUNK * 128];
	struct pdn_status st;
	unsigned int i, j;

	*failed = 0;
	if (pdn_cmd(n, PORTDISPATCH_CMD_BATCH_BEGIN, &st))
		return st.err;
	for (i = 0; i < count; i += CHUNK) {
		unsigned int m = count - i < CHUNK ? count - i : CHUNK;
		uint32_t first = n->seq + 1;
		size_t len = 0;

		for (j = 0; j < m; j++) {
			struct pdn_req r;

			pdn_req_init(n, &r, PORTDISPATCH_CMD_RULE_ADD, NLM_F_ACK);
			pdn_rule_key(&r, proto[i + j], port[i + j], 0);
			pdn_target_port(&r, tport);
			memcpy(buf + len, r.buf, r.nlh->nlmsg_len);
			len += NLMSG_ALIGN(r.nlh->nlmsg_len);
		}
		if (mnl_socket_sendto(n->sock, buf, len) != (ssize_t)len) {
			int err = errno ?: EMSGSIZE;

			*failed = i;
			pdn_cmd(n, PORTDISPATCH_CMD_BATCH_ABORT, &st);
			return err;
		}
		for (j = 0; j < m; j++) {
			int err = pdn_wait(n, first + j, &st);

			if (err) {
				*failed = i + j;
				pdn_cmd(n, PORTDISPATCH_CMD_BATCH_ABORT, &st);
				return err;
			}
		}
	}
	*failed = count;
	return pdn_cmd(n, PORTDISPATCH_CMD_BATCH_COMMIT, &st);
}

/* ---- dumps ------------------------------------------------------------ */

static int pdn_dump_start(struct pdn *n, struct pdn_dump *d)
{
	struct pdn_req r;

	memset(d, 0, sizeof(*d));
	pdn_req_init(n, &r, PORTDISPATCH_CMD_RULE_GET, NLM_F_DUMP);
	d->seq = r.nlh->nlmsg_seq;
	return pdn_send(n, &r);
}

/*
 * Reads the dump on until its end, or, when @max_dgrams is not 0, until
 * it has used that many datagrams whole. Returns the dump's errno, or
 * ours (ETIMEDOUT...).
 */
static int pdn_dump_read(struct pdn *n, struct pdn_dump *d,
			 unsigned int max_dgrams)
{
	while (!d->done) {
		const struct nlmsghdr *nlh;

		if (max_dgrams && d->datagrams >= max_dgrams &&
		    n->rx_pos >= n->rx_len)
			return 0;
		nlh = pdn_next(n, PDN_TIMEOUT_MS);
		if (!nlh) {
			d->err = errno;
			snprintf(d->msg, sizeof(d->msg),
				 "(no answer from the kernel: %s)",
				 strerror(errno));
			return d->err;
		}
		if (nlh->nlmsg_seq != d->seq) {
			d->stray++;
			continue;
		}
		if (n->datagrams != d->last_dgram) {
			if (!d->first_dgram)
				d->first_dgram = n->datagrams;
			d->last_dgram = n->datagrams;
			d->datagrams++;
		}
		if ((nlh->nlmsg_flags & NLM_F_DUMP_INTR) && !d->intr_dgram)
			d->intr_dgram = d->datagrams;

		if (nlh->nlmsg_type == NLMSG_DONE ||
		    nlh->nlmsg_type == NLMSG_ERROR) {
			struct pdn_status st = { 0 };

			pdn_parse_status(nlh, &st);
			d->err = st.err;
			memcpy(d->msg, st.msg, sizeof(d->msg));
			d->done = true;
			break;
		}
		if (nlh->nlmsg_type != n->family) {
			d->stray++;
			continue;
		}
		if (d->count == d->cap) {
			d->cap = d->cap ? 2 * d->cap : 64;
			d->rules = realloc(d->rules, d->cap * sizeof(*d->rules));
			if (!d->rules) {
				d->err = ENOMEM;
				return d->err;
			}
		}
		pdn_parse_rule(nlh, d->datagrams, &d->rules[d->count]);
		if (!(nlh->nlmsg_flags & NLM_F_MULTI))
			d->not_multi++;
		d->count++;
	}
	return d->err;
}

static void pdn_dump_free(struct pdn_dump *d)
{
	free(d->rules);
	d->rules = NULL;
	d->count = d->cap = 0;
}

/* The whole table, as a dump shows it. Returns the dump's errno. */
static int pdn_dump(struct pdn *n, struct pdn_dump *d)
{
	int err = pdn_dump_start(n, d);

	if (err) {
		d->err = -err;
		return d->err;
	}
	return pdn_dump_read(n, d, 0);
}

/* The first rule of @d on PROTO PORT (its RULE_PORT_MIN); NULL: none. */
static inline const struct pdn_rule *
pdn_dump_find(const struct pdn_dump *d, uint8_t proto, uint32_t port)
{
	unsigned int i;

	for (i = 0; i < d->count; i++)
		if (d->rules[i].proto == proto && d->rules[i].port_min == port)
			return &d->rules[i];
	return NULL;
}

/* The same rule, as far as a table goes (counters aside). */
static bool pdn_rule_same(const struct pdn_rule *a, const struct pdn_rule *b)
{
	return a->id == b->id && a->seen == b->seen && a->tseen == b->tseen &&
	       a->proto == b->proto && a->port_min == b->port_min &&
	       a->port_max == b->port_max && a->family == b->family &&
	       a->dst_len == b->dst_len && !memcmp(a->dst, b->dst, a->dst_len) &&
	       a->plen == b->plen && a->t.port == b->t.port &&
	       a->t.pid == b->t.pid && a->t.pid_fd == b->t.pid_fd &&
	       a->t.inode == b->t.inode && a->t.state == b->t.state;
}

/* "id 3 tcp 80-90 to port 8080", for failure messages. */
static const char *pdn_rule_str(const struct pdn_rule *r, char *buf,
				size_t len)
{
	int n = snprintf(buf, len, "id %u %s %u-%u", r->id,
			 r->proto == IPPROTO_TCP ? "tcp" :
			 r->proto == IPPROTO_UDP ? "udp" : "proto?",
			 r->port_min, r->port_max);

	if (PDN_THAS(r, PORTDISPATCH_A_TARGET_PORT))
		snprintf(buf + n, len - n, " to port %u", r->t.port);
	else
		snprintf(buf + n, len - n, " to pid %u fd %u", r->t.pid,
			 r->t.pid_fd);
	return buf;
}

/* Index of the first rule that differs between two dumps; -1: none. */
static int pdn_dump_diff(const struct pdn_dump *a, const struct pdn_dump *b)
{
	unsigned int i;

	for (i = 0; i < a->count && i < b->count; i++)
		if (!pdn_rule_same(&a->rules[i], &b->rules[i]))
			return i;
	return a->count == b->count ? -1 : (int)i;
}

/* ---- the family, events ----------------------------------------------- */

static void pdn_ctrl_group(const struct nlattr *grp, struct pdn *n)
{
	const struct nlattr *a;
	const char *name = NULL;
	uint32_t id = 0;

	mnl_attr_for_each_nested(a, grp) {
		switch (mnl_attr_get_type(a)) {
		case CTRL_ATTR_MCAST_GRP_NAME:
			if (!mnl_attr_validate(a, MNL_TYPE_NUL_STRING))
				name = mnl_attr_get_str(a);
			break;
		case CTRL_ATTR_MCAST_GRP_ID:
			if (!mnl_attr_validate(a, MNL_TYPE_U32))
				id = mnl_attr_get_u32(a);
			break;
		}
	}
	if (name && !strcmp(name, PORTDISPATCH_MCGRP_EVENTS))
		n->events_group = id;
}

/* An acked request to nlctrl: CTRL_CMD_GETFAMILY for family @name. */
static void pdn_req_getfamily(struct pdn *n, struct pdn_req *r,
			      const char *name)
{
	struct genlmsghdr *g;

	memset(r, 0, sizeof(*r));
	r->nlh = mnl_nlmsg_put_header(r->buf);
	r->nlh->nlmsg_type = GENL_ID_CTRL;
	r->nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	r->nlh->nlmsg_seq = ++n->seq;
	g = mnl_nlmsg_put_extra_header(r->nlh, sizeof(*g));
	g->cmd = CTRL_CMD_GETFAMILY;
	g->version = 1;
	mnl_attr_put_strz(r->nlh, CTRL_ATTR_FAMILY_NAME, name);
}

/* nlctrl's CTRL_CMD_GETFAMILY: the family's id and its events group. */
static int pdn_resolve(struct pdn *n)
{
	struct pdn_req r;
	struct pdn_status st;
	const struct nlmsghdr *nlh;
	const struct nlattr *a, *grp;

	pdn_req_getfamily(n, &r, PORTDISPATCH_FAMILY_NAME);
	if (pdn_send(n, &r))
		return -errno;

	/* The reply comes as GENL_ID_CTRL, not as our family: read it here. */
	for (;;) {
		nlh = pdn_next(n, PDN_TIMEOUT_MS);
		if (!nlh)
			return -errno;
		if (nlh->nlmsg_seq != r.nlh->nlmsg_seq)
			continue;
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			memset(&st, 0, sizeof(st));
			pdn_parse_status(nlh, &st);
			if (st.err)
				return -st.err;
			break;
		}
		if (nlh->nlmsg_type != GENL_ID_CTRL)
			continue;
		mnl_attr_for_each(a, nlh, GENL_HDRLEN) {
			switch (mnl_attr_get_type(a)) {
			case CTRL_ATTR_FAMILY_ID:
				if (!mnl_attr_validate(a, MNL_TYPE_U16))
					n->family = mnl_attr_get_u16(a);
				break;
			case CTRL_ATTR_MCAST_GROUPS:
				mnl_attr_for_each_nested(grp, a)
					pdn_ctrl_group(grp, n);
				break;
			}
		}
	}
	return n->family ? 0 : -ENOENT;
}

static void pdn_close(struct pdn *n)
{
	if (n->sock)
		mnl_socket_close(n->sock);
	n->sock = NULL;
	n->fd = -1;
	free(n->rx);
	n->rx = NULL;
}

/*
 * A socket in the current network namespace, extended and capped acks on,
 * the family resolved. 0, or -errno (-ENOENT: the module is not loaded).
 */
static int pdn_open(struct pdn *n)
{
	int one = 1, err;

	memset(n, 0, sizeof(*n));
	n->fd = -1;
	n->rx = malloc(PDN_RX_SIZE);
	n->sock = mnl_socket_open(NETLINK_GENERIC);
	if (!n->rx || !n->sock)
		goto fail;
	if (mnl_socket_bind(n->sock, 0, MNL_SOCKET_AUTOPID))
		goto fail;
	n->fd = mnl_socket_get_fd(n->sock);
	n->portid = mnl_socket_get_portid(n->sock);
	n->seq = (uint32_t)time(NULL);
	if (mnl_socket_setsockopt(n->sock, NETLINK_EXT_ACK, &one, sizeof(one)) ||
	    mnl_socket_setsockopt(n->sock, NETLINK_CAP_ACK, &one, sizeof(one)))
		goto fail;
	err = pdn_resolve(n);
	if (err) {
		pdn_close(n);
		return err;
	}
	return 0;
fail:
	err = -errno;
	pdn_close(n);
	return err ?: -ENOMEM;
}

/* Joins the "events" group: 0 or -errno. */
static int pdn_join_events(struct pdn *n)
{
	uint32_t grp = n->events_group;

	if (!grp)
		return -ENOENT;
	if (mnl_socket_setsockopt(n->sock, NETLINK_ADD_MEMBERSHIP, &grp,
				  sizeof(grp)))
		return -errno;
	return 0;
}

/* The next event within @ms: 0, or -errno (-ETIMEDOUT: none). */
static int pdn_event(struct pdn *n, int ms, struct pdn_rule *ev)
{
	const struct nlmsghdr *nlh = pdn_next(n, ms);

	if (!nlh)
		return -errno;
	if (nlh->nlmsg_type != n->family) {
		memset(ev, 0, sizeof(*ev));
		ev->malformed = true;
		return 0;
	}
	pdn_parse_rule(nlh, n->datagrams, ev);
	return 0;
}

/* ---- namespace counters ----------------------------------------------- */

struct pdn_stats {
	uint32_t seen;		/* bit n: PORTDISPATCH_A_NS_STATS_n */
	uint64_t lookups, hits, misses;
	uint32_t rules, max_rules;
	uint32_t udp_flows, max_udp_flows;
	uint64_t udp_flows_missed;
	uint8_t cmd;
};

/* STATS_GET: its errno, with the answer in @s. */
static int pdn_stats(struct pdn *n, struct pdn_stats *s, struct pdn_status *st)
{
	struct pdn_req r;
	const struct nlmsghdr *nlh;
	const struct nlattr *a;
	int err;

	memset(s, 0, sizeof(*s));
	memset(st, 0, sizeof(*st));
	pdn_req_init(n, &r, PORTDISPATCH_CMD_STATS_GET, NLM_F_ACK);
	err = pdn_send(n, &r);
	if (err) {
		st->err = -err;
		st->local = true;
		return st->err;
	}
	for (;;) {
		nlh = pdn_next(n, PDN_TIMEOUT_MS);
		if (!nlh) {
			st->err = errno;
			st->local = true;
			return st->err;
		}
		if (nlh->nlmsg_seq != r.nlh->nlmsg_seq) {
			st->stray++;
			continue;
		}
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			pdn_parse_status(nlh, st);
			return st->err;
		}
		st->replies++;
		s->cmd = ((const struct genlmsghdr *)
			  mnl_nlmsg_get_payload(nlh))->cmd;
		mnl_attr_for_each(a, nlh, GENL_HDRLEN) {
			uint16_t type = mnl_attr_get_type(a);

			switch (type) {
			case PORTDISPATCH_A_NS_STATS_LOOKUPS:
			case PORTDISPATCH_A_NS_STATS_HITS:
			case PORTDISPATCH_A_NS_STATS_MISSES:
			case PORTDISPATCH_A_NS_STATS_UDP_FLOWS_MISSED:
				if (mnl_attr_validate(a, MNL_TYPE_U64))
					continue;
				s->seen |= 1u << type;
				if (type == PORTDISPATCH_A_NS_STATS_LOOKUPS)
					s->lookups = mnl_attr_get_u64(a);
				else if (type == PORTDISPATCH_A_NS_STATS_HITS)
					s->hits = mnl_attr_get_u64(a);
				else if (type == PORTDISPATCH_A_NS_STATS_MISSES)
					s->misses = mnl_attr_get_u64(a);
				else
					s->udp_flows_missed = mnl_attr_get_u64(a);
				break;
			case PORTDISPATCH_A_NS_STATS_RULES:
			case PORTDISPATCH_A_NS_STATS_MAX_RULES:
			case PORTDISPATCH_A_NS_STATS_UDP_FLOWS:
			case PORTDISPATCH_A_NS_STATS_MAX_UDP_FLOWS:
				if (mnl_attr_validate(a, MNL_TYPE_U32))
					continue;
				s->seen |= 1u << type;
				if (type == PORTDISPATCH_A_NS_STATS_RULES)
					s->rules = mnl_attr_get_u32(a);
				else if (type == PORTDISPATCH_A_NS_STATS_MAX_RULES)
					s->max_rules = mnl_attr_get_u32(a);
				else if (type == PORTDISPATCH_A_NS_STATS_UDP_FLOWS)
					s->udp_flows = mnl_attr_get_u32(a);
				else
					s->max_udp_flows = mnl_attr_get_u32(a);
				break;
			}
		}
	}
}

#endif /* _PD_NETLINK_HELPERS_H */
