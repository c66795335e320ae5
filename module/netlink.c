// SPDX-License-Identifier: GPL-2.0
/*
 * The "portdispatch" generic netlink family; uapi/linux/portdispatch.h is
 * its contract. Every command is strictly validated (no attribute the
 * command does not take, no trailing data) and explains a refusal in its
 * extended ack, pointing at the attribute at fault.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/in.h>
#include <linux/inetdevice.h>
#include <linux/netlink.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <net/genetlink.h>
#include <net/ipv6.h>
#include <net/sock.h>
#include <linux/portdispatch.h>

#include "compat.h"
#include "gfp.h"
#include "group.h"
#include "netlink.h"
#include "pernet.h"
#include "reaper.h"
#include "reply.h"
#include "rule.h"
#include "store.h"
#include "txn.h"

enum pd_nl_mcgrp {
	PD_NL_MCGRP_EVENTS,
};

static const struct genl_multicast_group pd_nl_mcgrps[] = {
	[PD_NL_MCGRP_EVENTS] = {
		.name = PORTDISPATCH_MCGRP_EVENTS,
		.flags = GENL_MCAST_CAP_NET_ADMIN,
	},
};

static const struct nla_policy pd_target_policy[PORTDISPATCH_A_TARGET_MAX + 1] = {
	[PORTDISPATCH_A_TARGET_FD]	= { .type = NLA_U32 },
	[PORTDISPATCH_A_TARGET_PID]	= { .type = NLA_U32 },
	[PORTDISPATCH_A_TARGET_PID_FD]	= { .type = NLA_U32 },
	[PORTDISPATCH_A_TARGET_PORT]	= { .type = NLA_U32 },
	[PORTDISPATCH_A_TARGET_WEIGHT]	= { .type = NLA_U32 },
};

/* Ports are u32 so that a port of 70000 reaches us and gets a real answer. */
#define PD_RULE_KEY_POLICY						\
	[PORTDISPATCH_A_RULE_PROTO]	= { .type = NLA_U8 },		\
	[PORTDISPATCH_A_RULE_PORT_MIN]	= { .type = NLA_U32 },		\
	[PORTDISPATCH_A_RULE_PORT_MAX]	= { .type = NLA_U32 },		\
	[PORTDISPATCH_A_RULE_FAMILY]	= { .type = NLA_U8 },		\
	[PORTDISPATCH_A_RULE_DST]	= { .type = NLA_BINARY,		\
					    .len = sizeof(struct in6_addr) }, \
	[PORTDISPATCH_A_RULE_DST_PLEN]	= { .type = NLA_U8 }

static const struct nla_policy pd_rule_set_policy[PORTDISPATCH_A_RULE_MAX + 1] = {
	PD_RULE_KEY_POLICY,
	[PORTDISPATCH_A_RULE_TARGET]	= NLA_POLICY_NESTED(pd_target_policy),
};

static const struct nla_policy pd_rule_del_policy[PORTDISPATCH_A_RULE_MAX + 1] = {
	PD_RULE_KEY_POLICY,
};

static struct genl_family pd_nl_family;

/*
 * genetlink checks none of our requests (resv_start_op is past every
 * command): what it refuses never reaches the family, and a command of a
 * batch that is refused must fail the batch, whatever refused it. So each
 * handler checks its request as genetlink would, strictly: the header's
 * reserved field and flags, then every attribute against its policy (none
 * for a command without attributes).
 */
static int pd_nl_check_header(const struct nlmsghdr *nlh,
			      struct netlink_ext_ack *extack)
{
	const struct genlmsghdr *hdr = nlmsg_data(nlh);
	u16 flags = nlh->nlmsg_flags;

	if (hdr->reserved) {
		NL_SET_ERR_MSG(extack, "genlmsghdr.reserved field is not 0");
		return -EINVAL;
	}
	if ((flags & NLM_F_DUMP) == NLM_F_DUMP)
		flags &= ~NLM_F_DUMP;
	if (flags & ~(NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO)) {
		NL_SET_ERR_MSG(extack,
			       "ambiguous or reserved bits set in nlmsg_flags");
		return -EINVAL;
	}
	return 0;
}

/* The header, then the attributes into @tb (@maxtype + 1 entries). */
static int pd_nl_validate(struct genl_info *info,
			  const struct nla_policy *policy, int maxtype,
			  struct nlattr **tb)
{
	int err = pd_nl_check_header(info->nlhdr, info->extack);

	if (!err)
		err = nlmsg_parse(info->nlhdr, GENL_HDRLEN, tb, maxtype, policy,
				  info->extack);
	if (!err)
		info->attrs = tb;
	return err;
}

/* A command that takes no attribute. */
static int pd_nl_validate_none(struct genl_info *info)
{
	struct nlattr *tb[1];

	return pd_nl_validate(info, NULL, 0, tb);
}

static int pd_nl_missing(struct genl_info *info, int attr, const char *what)
{
	if (!GENL_REQ_ATTR_CHECK(info, attr))
		return 0;
	NL_SET_ERR_MSG_FMT(info->extack, "the request has no %s", what);
	return -EINVAL;
}

/*
 * What a request allocates is charged to its memory cgroup, so running
 * out of memory is a limit the caller can meet: say which.
 */
static int pd_nl_explain(struct genl_info *info, int err)
{
	if (err == -ENOMEM && !info->extack->_msg)
		NL_SET_ERR_MSG(info->extack,
			       "out of memory (rules are charged to the caller's memory cgroup)");
	return err;
}

static int pd_nl_bad(struct genl_info *info, int attr)
{
	NL_SET_BAD_ATTR(info->extack, info->attrs[attr]);
	return -EINVAL;
}

static int pd_nl_parse_ports(struct genl_info *info, struct pd_key *key)
{
	struct nlattr **tb = info->attrs;
	u32 min, max;

	if (pd_nl_missing(info, PORTDISPATCH_A_RULE_PORT_MIN, "port"))
		return -EINVAL;
	min = nla_get_u32(tb[PORTDISPATCH_A_RULE_PORT_MIN]);
	max = tb[PORTDISPATCH_A_RULE_PORT_MAX] ?
	      nla_get_u32(tb[PORTDISPATCH_A_RULE_PORT_MAX]) : min;

	if (!min || min > 65535) {
		NL_SET_ERR_MSG_FMT(info->extack,
				   "port %u is out of range 1-65535", min);
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_PORT_MIN);
	}
	if (!max || max > 65535) {
		NL_SET_ERR_MSG_FMT(info->extack,
				   "port %u is out of range 1-65535", max);
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_PORT_MAX);
	}
	if (max < min) {
		NL_SET_ERR_MSG_FMT(info->extack,
				   "port range %u-%u is reversed", min, max);
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_PORT_MAX);
	}
	key->port_min = min;
	key->port_max = max;
	return 0;
}

static int pd_nl_parse_dst(struct genl_info *info, struct pd_key *key)
{
	struct nlattr *dst = info->attrs[PORTDISPATCH_A_RULE_DST];
	union pd_addr masked = {};
	unsigned int bits;
	u8 plen, families;

	if (!dst && !info->attrs[PORTDISPATCH_A_RULE_DST_PLEN])
		return 0;
	if (pd_nl_missing(info, PORTDISPATCH_A_RULE_DST, "destination address") ||
	    pd_nl_missing(info, PORTDISPATCH_A_RULE_DST_PLEN,
			  "destination prefix length"))
		return -EINVAL;

	switch (nla_len(dst)) {
	case sizeof(struct in_addr):
		families = PD_FAM_V4;
		bits = 32;
		break;
	case sizeof(struct in6_addr):
		families = PD_FAM_V6;
		bits = 128;
		break;
	default:
		NL_SET_ERR_MSG(info->extack,
			       "a destination address is 4 or 16 bytes long");
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_DST);
	}

	plen = nla_get_u8(info->attrs[PORTDISPATCH_A_RULE_DST_PLEN]);
	if (plen > bits) {
		NL_SET_ERR_MSG_FMT(info->extack,
				   "prefix length %u is longer than the address (%u bits)",
				   plen, bits);
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_DST_PLEN);
	}
	if (!(key->families & families)) {
		NL_SET_ERR_MSG_FMT(info->extack,
				   "the destination is %s but the rule is %s",
				   bits == 32 ? "IPv4" : "IPv6",
				   bits == 32 ? "IPv6" : "IPv4");
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_DST);
	}

	nla_memcpy(&key->addr, dst, sizeof(key->addr));
	if (families == PD_FAM_V4)
		masked.v4 = key->addr.v4 & inet_make_mask(plen);
	else
		ipv6_addr_prefix(&masked.v6, &key->addr.v6, plen);
	if (!pd_addr_equal(&masked, &key->addr, families)) {
		NL_SET_ERR_MSG_FMT(info->extack,
				   "the destination has bits set past its /%u prefix",
				   plen);
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_DST);
	}
	/*
	 * IPv4 packets reach the IPv4 hook with their IPv4 addresses, never
	 * the IPv6 one as ::ffff:a.b.c.d: such a prefix could match nothing.
	 */
	if (families == PD_FAM_V6 && plen >= 96 &&
	    ipv6_addr_v4mapped(&key->addr.v6)) {
		NL_SET_ERR_MSG(info->extack,
			       "an IPv4-mapped IPv6 destination matches no packet: IPv4 packets are matched by their 4-byte IPv4 address");
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_DST);
	}

	key->families = families;
	key->plen = plen;
	return 0;
}

/* The attributes that say which flows a rule is for. */
static int pd_nl_parse_key(struct genl_info *info, struct pd_key *key)
{
	struct nlattr **tb = info->attrs;
	int err;

	memset(key, 0, sizeof(*key));

	if (pd_nl_missing(info, PORTDISPATCH_A_RULE_PROTO, "protocol"))
		return -EINVAL;
	switch (nla_get_u8(tb[PORTDISPATCH_A_RULE_PROTO])) {
	case IPPROTO_TCP:
		key->proto = PD_TCP;
		break;
	case IPPROTO_UDP:
		key->proto = PD_UDP;
		break;
	default:
		NL_SET_ERR_MSG_FMT(info->extack,
				   "protocol %u is neither TCP (6) nor UDP (17)",
				   nla_get_u8(tb[PORTDISPATCH_A_RULE_PROTO]));
		return pd_nl_bad(info, PORTDISPATCH_A_RULE_PROTO);
	}

	err = pd_nl_parse_ports(info, key);
	if (err)
		return err;

	key->families = PD_FAM_ALL;
	if (tb[PORTDISPATCH_A_RULE_FAMILY]) {
		switch (nla_get_u8(tb[PORTDISPATCH_A_RULE_FAMILY])) {
		case AF_INET:
			key->families = PD_FAM_V4;
			break;
		case AF_INET6:
			key->families = PD_FAM_V6;
			break;
		default:
			NL_SET_ERR_MSG(info->extack,
				       "the family is neither AF_INET nor AF_INET6");
			return pd_nl_bad(info, PORTDISPATCH_A_RULE_FAMILY);
		}
	}

	return pd_nl_parse_dst(info, key);
}

static int pd_nl_put_addr(struct sk_buff *msg, int attr, int family,
			  const void *addr)
{
	return nla_put(msg, attr, family == AF_INET ? sizeof(struct in_addr) :
			sizeof(struct in6_addr), addr);
}

static int pd_nl_put_socket(struct sk_buff *msg, const struct pd_target *t,
			    bool for_event)
{
	const struct sock *sk = t->sk;
	pid_t pid;

	/* An event has no reader to number the pid for: keep the namer's view. */
	pid = for_event ? pid_nr_ns(t->owner, t->owner_ns) : pid_vnr(t->owner);

	if (nla_put_u32(msg, PORTDISPATCH_A_TARGET_PID, pid) ||
	    nla_put_u32(msg, PORTDISPATCH_A_TARGET_PID_FD, t->owner_fd) ||
	    nla_put_string(msg, PORTDISPATCH_A_TARGET_COMM, t->comm) ||
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_TARGET_INODE, t->ino,
			      PORTDISPATCH_A_TARGET_PAD) ||
	    nla_put_u8(msg, PORTDISPATCH_A_TARGET_STATE, pd_target_state(t)) ||
	    nla_put_u8(msg, PORTDISPATCH_A_TARGET_FAMILY, sk->sk_family) ||
	    nla_put_u32(msg, PORTDISPATCH_A_TARGET_LOCAL_PORT, t->local_port) ||
	    pd_nl_put_addr(msg, PORTDISPATCH_A_TARGET_LOCAL_ADDR, sk->sk_family,
			   &t->local_addr))
		return -EMSGSIZE;
	if (ipv6_only_sock(sk) &&
	    nla_put_flag(msg, PORTDISPATCH_A_TARGET_V6ONLY))
		return -EMSGSIZE;
	return 0;
}

/* Counters in a nest of @attr; a group's member has no replies of its own. */
static int pd_nl_put_stats(struct sk_buff *msg, int attr,
			   struct pd_counters *counters, bool replies)
{
	u64 sum[PD_NCOUNTS];
	struct nlattr *nest;

	pd_counters_read(counters, sum);
	nest = nla_nest_start(msg, attr);
	if (!nest ||
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_RULE_STATS_STEERED,
			      sum[PD_COUNT_STEERED],
			      PORTDISPATCH_A_RULE_STATS_PAD) ||
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_RULE_STATS_UNDELIVERABLE,
			      sum[PD_COUNT_UNDELIVERABLE],
			      PORTDISPATCH_A_RULE_STATS_PAD))
		return -EMSGSIZE;
	if (replies &&
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_RULE_STATS_REPLIES,
			      sum[PD_COUNT_REPLIES],
			      PORTDISPATCH_A_RULE_STATS_PAD))
		return -EMSGSIZE;
	nla_nest_end(msg, nest);
	return 0;
}

/* A target; with @m, as a member of a group, with its weight and counters. */
static int pd_nl_put_target(struct sk_buff *msg, const struct pd_target *t,
			    const struct pd_member *m, bool for_event)
{
	struct nlattr *nest;
	int err;

	nest = nla_nest_start(msg, PORTDISPATCH_A_RULE_TARGET);
	if (!nest)
		return -EMSGSIZE;
	if (t->kind == PD_TARGET_PORT)
		err = nla_put_u32(msg, PORTDISPATCH_A_TARGET_PORT, t->port);
	else
		err = pd_nl_put_socket(msg, t, for_event);
	if (!err && m)
		err = nla_put_u32(msg, PORTDISPATCH_A_TARGET_WEIGHT, m->weight) ?:
		      pd_nl_put_stats(msg, PORTDISPATCH_A_TARGET_STATS,
				      m->counters, false);
	if (err) {
		nla_nest_cancel(msg, nest);
		return err;
	}
	nla_nest_end(msg, nest);
	return 0;
}

static int pd_nl_put_targets(struct sk_buff *msg, const struct pd_rule *rule,
			     bool for_event)
{
	const struct pd_group *g = pd_rule_group(rule);
	unsigned int i;

	if (!g)
		return pd_nl_put_target(msg, &rule->target, NULL, for_event);
	for (i = 0; i < g->size; i++)
		if (pd_nl_put_target(msg, &g->member[i].target, &g->member[i],
				     for_event))
			return -EMSGSIZE;
	return 0;
}

static int pd_nl_put_rule(struct sk_buff *msg, const struct pd_rule *rule,
			  bool for_event)
{
	const struct pd_key *key = &rule->key;
	int family = key->families == PD_FAM_V4 ? AF_INET : AF_INET6;

	if (nla_put_u32(msg, PORTDISPATCH_A_RULE_ID, rule->id) ||
	    nla_put_u8(msg, PORTDISPATCH_A_RULE_PROTO,
		       key->proto == PD_TCP ? IPPROTO_TCP : IPPROTO_UDP) ||
	    nla_put_u32(msg, PORTDISPATCH_A_RULE_PORT_MIN, key->port_min) ||
	    nla_put_u32(msg, PORTDISPATCH_A_RULE_PORT_MAX, key->port_max))
		return -EMSGSIZE;
	if (key->families != PD_FAM_ALL &&
	    nla_put_u8(msg, PORTDISPATCH_A_RULE_FAMILY, family))
		return -EMSGSIZE;
	if (key->plen &&
	    (pd_nl_put_addr(msg, PORTDISPATCH_A_RULE_DST, family, &key->addr) ||
	     nla_put_u8(msg, PORTDISPATCH_A_RULE_DST_PLEN, key->plen)))
		return -EMSGSIZE;
	/* Only UDP replies are rewritten. */
	if (pd_nl_put_targets(msg, rule, for_event) ||
	    pd_nl_put_stats(msg, PORTDISPATCH_A_RULE_STATS, rule->counters,
			    pd_rule_is_udp(rule)))
		return -EMSGSIZE;
	return 0;
}

/* One message for one rule; @cb marks a dump part, for consistency flags. */
static int pd_nl_fill_rule(struct sk_buff *msg, const struct pd_rule *rule,
			   u32 portid, u32 seq, int flags, u8 cmd,
			   struct netlink_callback *cb)
{
	void *hdr;

	hdr = genlmsg_put(msg, portid, seq, &pd_nl_family, flags, cmd);
	if (!hdr)
		return -EMSGSIZE;
	if (cb)
		genl_dump_check_consistent(cb, hdr);
	/*
	 * Only a deletion says why: a batch's ADD or REPLACE event of a rule
	 * that a later command of the batch removes is sent while the rule
	 * is already leaving.
	 */
	if (pd_nl_put_rule(msg, rule, !portid) ||
	    (cmd == PORTDISPATCH_CMD_RULE_DEL_NTF &&
	     nla_put_u8(msg, PORTDISPATCH_A_RULE_REASON, rule->del_reason))) {
		genlmsg_cancel(msg, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(msg, hdr);
	return 0;
}

/*
 * A request refused before it reached its transaction still fails the
 * batch it was part of: a client that committed anyway would otherwise
 * get the batch without that command.
 */
static int pd_nl_refuse(struct genl_info *info, int err)
{
	struct pd_net *pn = pd_net(genl_info_net(info));

	mutex_lock(&pn->lock);
	pd_batch_refused(pn, info->snd_portid, err);
	mutex_unlock(&pn->lock);
	return err;
}

/* The targets a request gives: RULE_TARGET, repeated. */
static unsigned int pd_nl_count_targets(struct genl_info *info)
{
	const struct nlattr *a;
	unsigned int n = 0;
	int rem;

	nlmsg_for_each_attr(a, info->nlhdr, GENL_HDRLEN, rem)
		n += nla_type(a) == PORTDISPATCH_A_RULE_TARGET;
	return n;
}

/* One target nest; @weight stays as it is when the nest has none. */
static int pd_nl_parse_target(struct genl_info *info, const struct nlattr *a,
			      struct pd_target *target, u8 *weight,
			      struct pd_key *key)
{
	struct nlattr *ttb[PORTDISPATCH_A_TARGET_MAX + 1];
	const struct nlattr *w;
	struct pd_target_req req;
	int err;

	err = nla_parse_nested(ttb, PORTDISPATCH_A_TARGET_MAX, a,
			       pd_target_policy, info->extack);
	if (err)
		return err;
	w = ttb[PORTDISPATCH_A_TARGET_WEIGHT];
	if (w) {
		if (!nla_get_u32(w) || nla_get_u32(w) > 255) {
			NL_SET_BAD_ATTR(info->extack, w);
			NL_SET_ERR_MSG_FMT(info->extack,
					   "weight %u is out of range 1-255",
					   nla_get_u32(w));
			return -EINVAL;
		}
		*weight = nla_get_u32(w);
	}
	req = (struct pd_target_req){
		.fd_attr	= ttb[PORTDISPATCH_A_TARGET_FD],
		.pid_attr	= ttb[PORTDISPATCH_A_TARGET_PID],
		.pid_fd_attr	= ttb[PORTDISPATCH_A_TARGET_PID_FD],
		.port_attr	= ttb[PORTDISPATCH_A_TARGET_PORT],
	};
	return pd_target_init(target, genl_info_net(info), &req, key,
			      info->extack);
}

/*
 * A group's members, in the order given. A target given twice would only
 * be a weight spelt twice, and counted twice: refused.
 */
static int pd_nl_parse_group(struct genl_info *info, struct pd_rule *rule)
{
	struct pd_group *g = rule->target.group;
	const struct nlattr *a;
	unsigned int i, n = 0;
	int rem, err;

	nlmsg_for_each_attr(a, info->nlhdr, GENL_HDRLEN, rem) {
		struct pd_member *m = &g->member[n];

		if (nla_type(a) != PORTDISPATCH_A_RULE_TARGET)
			continue;
		m->weight = 1;
		err = pd_nl_parse_target(info, a, &m->target, &m->weight,
					 &rule->key);
		if (err)
			return err;
		for (i = 0; i < n; i++) {
			if (!pd_target_same(&g->member[i].target, &m->target))
				continue;
			NL_SET_BAD_ATTR(info->extack, a);
			NL_SET_ERR_MSG_FMT(info->extack,
					   "target %u repeats target %u: give one a larger weight",
					   n + 1, i + 1);
			return -EINVAL;
		}
		n++;
	}
	pd_group_build(g, pd_group_seed(pd_net(genl_info_net(info))->group_seed,
					&rule->key));
	return 0;
}

/* The rule a RULE_ADD or RULE_REPLACE asks for, in no table yet. */
static int pd_nl_rule_new(struct genl_info *info, struct pd_rule **rulep)
{
	unsigned int targets = pd_nl_count_targets(info);
	struct pd_rule *rule;
	struct pd_key key;
	u8 weight;
	int err;

	err = pd_nl_parse_key(info, &key);
	if (err)
		return err;
	if (pd_nl_missing(info, PORTDISPATCH_A_RULE_TARGET, "target"))
		return -EINVAL;
	if (targets > PD_GROUP_MAX) {
		NL_SET_ERR_MSG_FMT(info->extack,
				   "a rule has at most %u targets, not %u",
				   PD_GROUP_MAX, targets);
		return -EINVAL;
	}

	rule = pd_rule_alloc(&key, PD_GFP);
	if (!rule)
		return -ENOMEM;
	if (targets == 1) {
		/* A weight alone has nothing to share with: checked, unused. */
		err = pd_nl_parse_target(info,
					 info->attrs[PORTDISPATCH_A_RULE_TARGET],
					 &rule->target, &weight, &rule->key);
	} else {
		rule->target.group = pd_group_alloc(targets, PD_GFP);
		rule->target.kind = PD_TARGET_GROUP;
		err = rule->target.group ? pd_nl_parse_group(info, rule) :
					   -ENOMEM;
	}
	if (err) {
		pd_rule_free(rule);
		return err;
	}
	*rulep = rule;
	return 0;
}

static int pd_nl_rule_set(struct genl_info *info, bool replace)
{
	struct pd_net *pn = pd_net(genl_info_net(info));
	struct sk_buff *echo = NULL;
	struct pd_rule *rule;
	struct pd_txn *txn;
	int err;

	err = pd_nl_rule_new(info, &rule);
	if (!err && (info->nlhdr->nlmsg_flags & NLM_F_ECHO)) {
		echo = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
		if (!echo) {
			pd_rule_free(rule);
			err = -ENOMEM;
		}
	}
	if (err)
		return pd_nl_refuse(info, err);

	mutex_lock(&pn->lock);
	txn = pd_txn_get(pn, info->snd_portid, info->extack);
	if (IS_ERR(txn)) {
		pd_rule_free(rule);
		err = PTR_ERR(txn);
		goto unlock;
	}
	err = pd_txn_add(pn, txn, rule, replace, info->extack);
	err = pd_txn_put(pn, txn, err, info->extack);
	/*
	 * Committed (or staged in a batch), and alive while we hold the lock.
	 * The change stands even if the echo cannot be written.
	 */
	if (!err && echo &&
	    pd_nl_fill_rule(echo, rule, info->snd_portid, info->snd_seq, 0,
			    PORTDISPATCH_CMD_RULE_GET, NULL)) {
		nlmsg_free(echo);
		echo = NULL;
	}
unlock:
	mutex_unlock(&pn->lock);

	if (echo) {
		if (!err)
			return genlmsg_reply(echo, info);
		nlmsg_free(echo);
	}
	return err;
}

static int pd_nl_rule_add(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *tb[PORTDISPATCH_A_RULE_MAX + 1];
	int err = pd_nl_validate(info, pd_rule_set_policy,
				 PORTDISPATCH_A_RULE_MAX, tb);

	if (err)
		return pd_nl_refuse(info, err);
	return pd_nl_explain(info, pd_nl_rule_set(info, false));
}

static int pd_nl_rule_replace(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *tb[PORTDISPATCH_A_RULE_MAX + 1];
	int err = pd_nl_validate(info, pd_rule_set_policy,
				 PORTDISPATCH_A_RULE_MAX, tb);

	if (err)
		return pd_nl_refuse(info, err);
	return pd_nl_explain(info, pd_nl_rule_set(info, true));
}

static int pd_nl_rule_del(struct sk_buff *skb, struct genl_info *info)
{
	struct pd_net *pn = pd_net(genl_info_net(info));
	struct nlattr *tb[PORTDISPATCH_A_RULE_MAX + 1];
	struct pd_txn *txn;
	struct pd_key key;
	int err;

	err = pd_nl_validate(info, pd_rule_del_policy, PORTDISPATCH_A_RULE_MAX,
			     tb);
	if (!err)
		err = pd_nl_parse_key(info, &key);
	if (err)
		return pd_nl_refuse(info, err);

	mutex_lock(&pn->lock);
	txn = pd_txn_get(pn, info->snd_portid, info->extack);
	if (IS_ERR(txn)) {
		err = PTR_ERR(txn);
	} else {
		err = pd_txn_del(pn, txn, &key, info->extack);
		err = pd_txn_put(pn, txn, err, info->extack);
	}
	mutex_unlock(&pn->lock);
	return pd_nl_explain(info, err);
}

static int pd_nl_flush(struct sk_buff *skb, struct genl_info *info)
{
	struct pd_net *pn = pd_net(genl_info_net(info));
	struct pd_txn *txn;
	int err;

	err = pd_nl_validate_none(info);
	if (err)
		return pd_nl_refuse(info, err);
	mutex_lock(&pn->lock);
	txn = pd_txn_get(pn, info->snd_portid, info->extack);
	if (IS_ERR(txn)) {
		err = PTR_ERR(txn);
	} else {
		err = pd_txn_flush(pn, txn);
		err = pd_txn_put(pn, txn, err, info->extack);
	}
	mutex_unlock(&pn->lock);
	return pd_nl_explain(info, err);
}

static int pd_nl_batch(struct genl_info *info, int cmd)
{
	struct pd_net *pn = pd_net(genl_info_net(info));
	int err;

	err = pd_nl_validate_none(info);
	if (err)
		return err;
	mutex_lock(&pn->lock);
	if (cmd == PORTDISPATCH_CMD_BATCH_BEGIN)
		err = pd_batch_begin(pn, info->snd_portid, info->extack);
	else
		err = pd_batch_end(pn, info->snd_portid,
				   cmd == PORTDISPATCH_CMD_BATCH_COMMIT,
				   info->extack);
	mutex_unlock(&pn->lock);
	return pd_nl_explain(info, err);
}

static int pd_nl_batch_begin(struct sk_buff *skb, struct genl_info *info)
{
	return pd_nl_batch(info, PORTDISPATCH_CMD_BATCH_BEGIN);
}

static int pd_nl_batch_commit(struct sk_buff *skb, struct genl_info *info)
{
	return pd_nl_batch(info, PORTDISPATCH_CMD_BATCH_COMMIT);
}

static int pd_nl_batch_abort(struct sk_buff *skb, struct genl_info *info)
{
	return pd_nl_batch(info, PORTDISPATCH_CMD_BATCH_ABORT);
}

static int pd_nl_stats_get(struct sk_buff *skb, struct genl_info *info)
{
	struct pd_net *pn = pd_net(genl_info_net(info));
	struct pd_ns_stats sum = {};
	struct sk_buff *msg;
	unsigned int rules;
	u64 flows_missed;
	u32 flows;
	void *hdr;
	int cpu, err;

	err = pd_nl_validate_none(info);
	if (err)
		return err;
	for_each_possible_cpu(cpu) {
		const struct pd_ns_stats *s = per_cpu_ptr(pn->dp->stats, cpu);

		sum.hits += READ_ONCE(s->hits);
		sum.misses += READ_ONCE(s->misses);
	}
	mutex_lock(&pn->lock);
	rules = pn->nr_rules;
	pd_replies_stats(pn, &flows, &flows_missed);
	mutex_unlock(&pn->lock);

	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg) {
		NL_SET_ERR_MSG(info->extack, "out of memory for the answer");
		return -ENOMEM;
	}
	hdr = genlmsg_put_reply(msg, info, &pd_nl_family, 0,
				PORTDISPATCH_CMD_STATS_GET);
	if (!hdr ||
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_NS_STATS_LOOKUPS,
			      sum.hits + sum.misses,
			      PORTDISPATCH_A_NS_STATS_PAD) ||
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_NS_STATS_HITS, sum.hits,
			      PORTDISPATCH_A_NS_STATS_PAD) ||
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_NS_STATS_MISSES, sum.misses,
			      PORTDISPATCH_A_NS_STATS_PAD) ||
	    nla_put_u32(msg, PORTDISPATCH_A_NS_STATS_RULES, rules) ||
	    nla_put_u32(msg, PORTDISPATCH_A_NS_STATS_MAX_RULES,
			READ_ONCE(pd_max_rules)) ||
	    nla_put_u32(msg, PORTDISPATCH_A_NS_STATS_UDP_FLOWS, flows) ||
	    nla_put_u32(msg, PORTDISPATCH_A_NS_STATS_MAX_UDP_FLOWS,
			READ_ONCE(pd_max_udp_flows)) ||
	    nla_put_u64_64bit(msg, PORTDISPATCH_A_NS_STATS_UDP_FLOWS_MISSED,
			      flows_missed, PORTDISPATCH_A_NS_STATS_PAD)) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
}

/* Where a dump resumes: the protocol, then the position in its tree. */
struct pd_dump_ctx {
	u8	proto;
	u64	pos;
};

static int pd_nl_dump_start(struct netlink_callback *cb)
{
	struct pd_net *pn = pd_net(sock_net(cb->skb->sk));
	struct pd_dump_ctx *ctx = (void *)cb->ctx;
	struct nlattr *tb[1];
	int err;

	/* 6.1 gives a dump's start no extended ack: the errno says it. */
	err = pd_nl_check_header(cb->nlh, cb->extack);
	if (!err)
		err = nlmsg_parse(cb->nlh, GENL_HDRLEN, tb, 0, NULL, cb->extack);
	if (err)
		return err;

	BUILD_BUG_ON(sizeof(*ctx) > sizeof(cb->ctx));
	memset(ctx, 0, sizeof(*ctx));

	/* A listing never shows a rule whose socket has already closed. */
	mutex_lock(&pn->lock);
	pd_reap_locked(pn);
	mutex_unlock(&pn->lock);
	return 0;
}

static int pd_nl_dump(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct pd_net *pn = pd_net(sock_net(skb->sk));
	struct pd_dump_ctx *ctx = (void *)cb->ctx;
	struct pd_rule *rule;
	int err = 0;

	mutex_lock(&pn->lock);
	cb->seq = pn->generation;
	for (; ctx->proto < PD_NPROTO; ctx->proto++, ctx->pos = 0) {
		for (rule = pd_store_seek(&pn->store, ctx->proto, ctx->pos);
		     rule; rule = pd_store_next(rule)) {
			/* A dump shows what packets see: not a batch's work. */
			if (rule->staged_add)
				continue;
			err = pd_nl_fill_rule(skb, rule,
					      NETLINK_CB(cb->skb).portid,
					      cb->nlh->nlmsg_seq, NLM_F_MULTI,
					      PORTDISPATCH_CMD_RULE_GET, cb);
			if (err)
				goto out;
			ctx->pos = pd_rule_pos(rule) + 1;
		}
	}
out:
	mutex_unlock(&pn->lock);
	if (err == -EMSGSIZE && skb->len)
		return skb->len;
	return err ?: skb->len;
}

/* Listeners that miss an event must know it, as with rtnetlink. */
static void pd_nl_notify_lost(struct net *net)
{
	netlink_set_err(net->genl_sock, 0,
			pd_nl_family.mcgrp_offset + PD_NL_MCGRP_EVENTS,
			-ENOBUFS);
}

static void pd_nl_notify_rule(struct net *net, const struct pd_rule *rule,
			      u8 cmd)
{
	struct sk_buff *msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);

	if (!msg || pd_nl_fill_rule(msg, rule, 0, 0, 0, cmd, NULL)) {
		nlmsg_free(msg);
		pd_nl_notify_lost(net);
		return;
	}
	genlmsg_multicast_netns(&pd_nl_family, net, msg, 0, PD_NL_MCGRP_EVENTS,
				GFP_KERNEL);
}

static void pd_nl_notify_flush(struct net *net, u32 count)
{
	struct sk_buff *msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	void *hdr;

	hdr = msg ? genlmsg_put(msg, 0, 0, &pd_nl_family, 0,
				PORTDISPATCH_CMD_FLUSH_NTF) : NULL;
	if (!hdr || nla_put_u32(msg, PORTDISPATCH_A_RULE_COUNT, count)) {
		nlmsg_free(msg);
		pd_nl_notify_lost(net);
		return;
	}
	genlmsg_end(msg, hdr);
	genlmsg_multicast_netns(&pd_nl_family, net, msg, 0, PD_NL_MCGRP_EVENTS,
				GFP_KERNEL);
}

void pd_nl_notify(struct pd_net *pn, const struct pd_change *c)
{
	struct net *net = pn->net;
	struct pd_rule *rule;

	if (!genl_has_listeners(&pd_nl_family, net, PD_NL_MCGRP_EVENTS))
		return;

	switch (c->op) {
	case PD_OP_ADD:
		pd_nl_notify_rule(net, c->added, PORTDISPATCH_CMD_RULE_ADD_NTF);
		break;
	case PD_OP_REPLACE:
		/*
		 * The new rule takes the first replaced rule's id; the others
		 * it replaced leave first, so that a listener applying the
		 * events in order never holds two conflicting rules.
		 */
		list_for_each_entry(rule, &c->removed, del_node)
			if (!list_is_first(&rule->del_node, &c->removed))
				pd_nl_notify_rule(net, rule,
						  PORTDISPATCH_CMD_RULE_DEL_NTF);
		pd_nl_notify_rule(net, c->added, c->nr_removed ?
				  PORTDISPATCH_CMD_RULE_REPLACE_NTF :
				  PORTDISPATCH_CMD_RULE_ADD_NTF);
		break;
	case PD_OP_DEL:
		list_for_each_entry(rule, &c->removed, del_node)
			pd_nl_notify_rule(net, rule,
					  PORTDISPATCH_CMD_RULE_DEL_NTF);
		break;
	case PD_OP_FLUSH:
		pd_nl_notify_flush(net, c->nr_removed);
		break;
	}
}

static const struct genl_ops pd_nl_ops[] = {
	{
		.cmd	= PORTDISPATCH_CMD_RULE_ADD,
		.doit	= pd_nl_rule_add,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_RULE_REPLACE,
		.doit	= pd_nl_rule_replace,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_RULE_DEL,
		.doit	= pd_nl_rule_del,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_RULE_GET,
		.start	= pd_nl_dump_start,
		.dumpit	= pd_nl_dump,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_FLUSH,
		.doit	= pd_nl_flush,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_STATS_GET,
		.doit	= pd_nl_stats_get,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_BATCH_BEGIN,
		.doit	= pd_nl_batch_begin,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_BATCH_COMMIT,
		.doit	= pd_nl_batch_commit,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd	= PORTDISPATCH_CMD_BATCH_ABORT,
		.doit	= pd_nl_batch_abort,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
};

/*
 * Every command is strict, but checked by its handler (see
 * pd_nl_validate()): genetlink's own checks start past the last one.
 */
static struct genl_family pd_nl_family __ro_after_init = {
	.name		= PORTDISPATCH_FAMILY_NAME,
	.version	= PORTDISPATCH_FAMILY_VERSION,
	.netnsok	= true,
	/*
	 * Namespaces serialise on their own lock; genl_mutex, which every
	 * family's lookup on the host needs, is never held for us.
	 */
	.parallel_ops	= true,
	.module		= THIS_MODULE,
	.ops		= pd_nl_ops,
	.n_ops		= ARRAY_SIZE(pd_nl_ops),
	.resv_start_op	= __PORTDISPATCH_CMD_MAX,
	.mcgrps		= pd_nl_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(pd_nl_mcgrps),
};

/* A batch dies with the socket that opened it. */
static int pd_nl_release(struct notifier_block *nb, unsigned long event,
			 void *ptr)
{
	struct netlink_notify *n = ptr;
	struct pd_net *pn;

	if (event != NETLINK_URELEASE || n->protocol != NETLINK_GENERIC)
		return NOTIFY_DONE;

	pn = pd_net(n->net);
	mutex_lock(&pn->lock);
	pd_batch_release(pn, n->portid);
	mutex_unlock(&pn->lock);
	return NOTIFY_DONE;
}

static struct notifier_block pd_nl_notifier = {
	.notifier_call = pd_nl_release,
};

int __init pd_nl_init(void)
{
	int err;

	err = netlink_register_notifier(&pd_nl_notifier);
	if (err)
		return err;
	err = genl_register_family(&pd_nl_family);
	if (err)
		netlink_unregister_notifier(&pd_nl_notifier);
	return err;
}

void pd_nl_exit(void)
{
	genl_unregister_family(&pd_nl_family);
	netlink_unregister_notifier(&pd_nl_notifier);
}
