// SPDX-License-Identifier: GPL-2.0
#include "rule.h"

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/portdispatch.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

const char *proto_name(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	}
	return NULL;
}

static void put_target(struct nlmsghdr *nlh, const struct target_spec *t)
{
	struct nlattr *nest = mnl_attr_nest_start(nlh, PORTDISPATCH_A_RULE_TARGET);

	if (t->kind == SPEC_TARGET_PORT) {
		mnl_attr_put_u32(nlh, PORTDISPATCH_A_TARGET_PORT, t->port);
	} else {
		mnl_attr_put_u32(nlh, PORTDISPATCH_A_TARGET_FD, (uint32_t)t->fd);
		mnl_attr_put_u32(nlh, PORTDISPATCH_A_TARGET_PID, t->pid);
		mnl_attr_put_u32(nlh, PORTDISPATCH_A_TARGET_PID_FD, t->pid_fd);
	}
	/* Only as written: a lone target's weight is the kernel's to forget. */
	if (t->has_weight)
		mnl_attr_put_u32(nlh, PORTDISPATCH_A_TARGET_WEIGHT, t->weight);
	mnl_attr_nest_end(nlh, nest);
}

void rule_put_spec(struct nlmsghdr *nlh, const struct rule_spec *spec)
{
	size_t i;

	mnl_attr_put_u8(nlh, PORTDISPATCH_A_RULE_PROTO, spec->proto);
	mnl_attr_put_u32(nlh, PORTDISPATCH_A_RULE_PORT_MIN, spec->port_min);
	/* A single port is sent as written: the kernel defaults PORT_MAX. */
	if (spec->has_port_max)
		mnl_attr_put_u32(nlh, PORTDISPATCH_A_RULE_PORT_MAX,
				 spec->port_max);
	if (spec->family)
		mnl_attr_put_u8(nlh, PORTDISPATCH_A_RULE_FAMILY, spec->family);
	if (spec->has_dst) {
		mnl_attr_put(nlh, PORTDISPATCH_A_RULE_DST,
			     spec->dst_family == AF_INET ? 4 : 16, spec->dst);
		mnl_attr_put_u8(nlh, PORTDISPATCH_A_RULE_DST_PLEN,
				spec->dst_plen);
	}
	for (i = 0; i < spec->ntargets; i++)
		put_target(nlh, &spec->targets[i]);
}

/* Attribute types and sizes; a malformed attribute is left out. */
static bool valid(const struct nlattr *a, enum mnl_attr_data_type type)
{
	return mnl_attr_validate(a, type) == 0;
}

static bool valid_addr(const struct nlattr *a)
{
	uint16_t len = mnl_attr_get_payload_len(a);

	return len == 4 || len == 16;
}

/* RULE_STATS_STEERED and _UNDELIVERABLE, of a rule or of one target. */
static void parse_counters(const struct nlattr *nest, uint64_t *steered,
			   uint64_t *undeliverable, bool *has_replies,
			   uint64_t *replies)
{
	const struct nlattr *a;

	mnl_attr_for_each_nested(a, nest) {
		if (!valid(a, MNL_TYPE_U64))
			continue;
		switch (mnl_attr_get_type(a)) {
		case PORTDISPATCH_A_RULE_STATS_STEERED:
			*steered = mnl_attr_get_u64(a);
			break;
		case PORTDISPATCH_A_RULE_STATS_UNDELIVERABLE:
			*undeliverable = mnl_attr_get_u64(a);
			break;
		case PORTDISPATCH_A_RULE_STATS_REPLIES:
			if (has_replies) {
				*has_replies = true;
				*replies = mnl_attr_get_u64(a);
			}
			break;
		}
	}
}

static void parse_target(const struct nlattr *nest, struct rule_target *t)
{
	const struct nlattr *a;

	memset(t, 0, sizeof(*t));
	t->type = RULE_TARGET_UNKNOWN;
	mnl_attr_for_each_nested(a, nest) {
		switch (mnl_attr_get_type(a)) {
		case PORTDISPATCH_A_TARGET_PID:
			if ((t->has_pid = valid(a, MNL_TYPE_U32)))
				t->pid = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_TARGET_PID_FD:
			if ((t->has_pid_fd = valid(a, MNL_TYPE_U32)))
				t->pid_fd = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_TARGET_PORT:
			if (valid(a, MNL_TYPE_U32)) {
				t->type = RULE_TARGET_PORT;
				t->port = mnl_attr_get_u32(a);
			}
			break;
		case PORTDISPATCH_A_TARGET_COMM:
			if (valid(a, MNL_TYPE_NUL_STRING))
				snprintf(t->comm, sizeof(t->comm), "%s",
					 mnl_attr_get_str(a));
			break;
		case PORTDISPATCH_A_TARGET_INODE:
			if ((t->has_inode = valid(a, MNL_TYPE_U64)))
				t->inode = mnl_attr_get_u64(a);
			break;
		case PORTDISPATCH_A_TARGET_STATE:
			if ((t->has_state = valid(a, MNL_TYPE_U8)))
				t->state = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_TARGET_FAMILY:
			if ((t->has_family = valid(a, MNL_TYPE_U8)))
				t->family = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_TARGET_V6ONLY:
			t->v6only = true;
			break;
		case PORTDISPATCH_A_TARGET_LOCAL_ADDR:
			if ((t->has_local_addr = valid_addr(a))) {
				t->local_addr_len =
					(uint8_t)mnl_attr_get_payload_len(a);
				memcpy(t->local_addr, mnl_attr_get_payload(a),
				       t->local_addr_len);
			}
			break;
		case PORTDISPATCH_A_TARGET_LOCAL_PORT:
			if ((t->has_local_port = valid(a, MNL_TYPE_U32)))
				t->local_port = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_TARGET_WEIGHT:
			if ((t->has_weight = valid(a, MNL_TYPE_U32)))
				t->weight = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_TARGET_STATS:
			if ((t->has_stats = valid(a, MNL_TYPE_NESTED)))
				parse_counters(a, &t->steered, &t->undeliverable,
					       NULL, NULL);
			break;
		}
	}
	/* Anything that describes a socket makes it a socket target. */
	if (t->type == RULE_TARGET_UNKNOWN &&
	    (t->has_pid || t->has_inode || t->has_state))
		t->type = RULE_TARGET_SOCKET;
}

static void add_target(const struct nlattr *nest, struct rule *r)
{
	r->targets = xreallocarray(r->targets, r->ntargets + 1,
				   sizeof(*r->targets));
	parse_target(nest, &r->targets[r->ntargets++]);
}

void rule_free(struct rule *r)
{
	free(r->targets);
	r->targets = NULL;
	r->ntargets = 0;
}

bool rule_is_group(const struct rule *r)
{
	return r->ntargets > 1 || (r->ntargets == 1 && r->targets[0].has_weight);
}

int rule_parse(const struct nlmsghdr *nlh, struct rule *r)
{
	const struct nlattr *a;
	bool has_proto = false, has_port = false, has_max = false;

	memset(r, 0, sizeof(*r));
	mnl_attr_for_each(a, nlh, GENL_HDRLEN) {
		switch (mnl_attr_get_type(a)) {
		case PORTDISPATCH_A_RULE_ID:
			if ((r->has_id = valid(a, MNL_TYPE_U32)))
				r->id = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_RULE_PROTO:
			if ((has_proto = valid(a, MNL_TYPE_U8)))
				r->proto = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_PORT_MIN:
			if ((has_port = valid(a, MNL_TYPE_U32)))
				r->port_min = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_RULE_PORT_MAX:
			if ((has_max = valid(a, MNL_TYPE_U32)))
				r->port_max = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_RULE_FAMILY:
			if (valid(a, MNL_TYPE_U8))
				r->family = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_DST:
			if ((r->has_dst = valid_addr(a))) {
				r->dst_len = (uint8_t)mnl_attr_get_payload_len(a);
				memcpy(r->dst, mnl_attr_get_payload(a), r->dst_len);
			}
			break;
		case PORTDISPATCH_A_RULE_DST_PLEN:
			if (valid(a, MNL_TYPE_U8))
				r->dst_plen = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_TARGET:
			if (valid(a, MNL_TYPE_NESTED))
				add_target(a, r);
			break;
		case PORTDISPATCH_A_RULE_STATS:
			if ((r->has_stats = valid(a, MNL_TYPE_NESTED)))
				parse_counters(a, &r->steered,
					       &r->undeliverable,
					       &r->has_replies, &r->replies);
			break;
		case PORTDISPATCH_A_RULE_REASON:
			if ((r->has_reason = valid(a, MNL_TYPE_U8)))
				r->reason = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_RULE_COUNT:
			if ((r->has_count = valid(a, MNL_TYPE_U32)))
				r->count = mnl_attr_get_u32(a);
			break;
		}
	}
	if (!has_max)
		r->port_max = r->port_min;
	if (has_proto && has_port)
		return 0;
	rule_free(r);
	return -1;
}

const char *rule_attr_at(const struct nlmsghdr *req, uint32_t offs)
{
	static const char *const words[] = {
		[PORTDISPATCH_A_RULE_PROTO] = "the protocol",
		[PORTDISPATCH_A_RULE_PORT_MIN] = "the port",
		[PORTDISPATCH_A_RULE_PORT_MAX] = "the port range",
		[PORTDISPATCH_A_RULE_FAMILY] = "the address family (-4/-6)",
		[PORTDISPATCH_A_RULE_DST] = "the prefix",
		[PORTDISPATCH_A_RULE_DST_PLEN] = "the prefix length",
		[PORTDISPATCH_A_RULE_TARGET] = "the target",
	};
	const struct nlattr *a;

	/* The offset counts from the start of the request's header. */
	mnl_attr_for_each(a, req, GENL_HDRLEN) {
		uint32_t start = (uint32_t)((const char *)a - (const char *)req);
		uint16_t type = mnl_attr_get_type(a);

		if (offs < start || offs >= start + a->nla_len)
			continue;
		if (type == PORTDISPATCH_A_RULE_TARGET)
			return "the target";
		return type < ARRAY_SIZE(words) ? words[type] : NULL;
	}
	return NULL;
}
