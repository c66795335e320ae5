// SPDX-License-Identifier: GPL-2.0
#include "rule.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/portdispatch.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "print.h"
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

static void parse_target(const struct nlattr *nest, struct rule *r)
{
	const struct nlattr *a;

	r->target.type = RULE_TARGET_UNKNOWN;
	mnl_attr_for_each_nested(a, nest) {
		switch (mnl_attr_get_type(a)) {
		case PORTDISPATCH_A_TARGET_PID:
			if ((r->target.has_pid = valid(a, MNL_TYPE_U32)))
				r->target.pid = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_TARGET_PID_FD:
			if ((r->target.has_pid_fd = valid(a, MNL_TYPE_U32)))
				r->target.pid_fd = mnl_attr_get_u32(a);
			break;
		case PORTDISPATCH_A_TARGET_PORT:
			if (valid(a, MNL_TYPE_U32)) {
				r->target.type = RULE_TARGET_PORT;
				r->target.port = mnl_attr_get_u32(a);
			}
			break;
		case PORTDISPATCH_A_TARGET_COMM:
			if (valid(a, MNL_TYPE_NUL_STRING))
				snprintf(r->target.comm, sizeof(r->target.comm),
					 "%s", mnl_attr_get_str(a));
			break;
		case PORTDISPATCH_A_TARGET_INODE:
			if ((r->target.has_inode = valid(a, MNL_TYPE_U64)))
				r->target.inode = mnl_attr_get_u64(a);
			break;
		case PORTDISPATCH_A_TARGET_STATE:
			if ((r->target.has_state = valid(a, MNL_TYPE_U8)))
				r->target.state = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_TARGET_FAMILY:
			if ((r->target.has_family = valid(a, MNL_TYPE_U8)))
				r->target.family = mnl_attr_get_u8(a);
			break;
		case PORTDISPATCH_A_TARGET_V6ONLY:
			r->target.v6only = true;
			break;
		case PORTDISPATCH_A_TARGET_LOCAL_ADDR:
			if ((r->target.has_local_addr = valid_addr(a))) {
				r->target.local_addr_len =
					(uint8_t)mnl_attr_get_payload_len(a);
				memcpy(r->target.local_addr,
				       mnl_attr_get_payload(a),
				       r->target.local_addr_len);
			}
			break;
		case PORTDISPATCH_A_TARGET_LOCAL_PORT:
			if ((r->target.has_local_port = valid(a, MNL_TYPE_U32)))
				r->target.local_port = mnl_attr_get_u32(a);
			break;
		}
	}
	/* Anything that describes a socket makes it a socket target. */
	if (r->target.type == RULE_TARGET_UNKNOWN &&
	    (r->target.has_pid || r->target.has_inode || r->target.has_state))
		r->target.type = RULE_TARGET_SOCKET;
}

static void parse_stats(const struct nlattr *nest, struct rule *r)
{
	const struct nlattr *a;

	r->has_stats = true;
	mnl_attr_for_each_nested(a, nest) {
		if (!valid(a, MNL_TYPE_U64))
			continue;
		switch (mnl_attr_get_type(a)) {
		case PORTDISPATCH_A_RULE_STATS_STEERED:
			r->steered = mnl_attr_get_u64(a);
			break;
		case PORTDISPATCH_A_RULE_STATS_UNDELIVERABLE:
			r->undeliverable = mnl_attr_get_u64(a);
			break;
		case PORTDISPATCH_A_RULE_STATS_REPLIES:
			r->has_replies = true;
			r->replies = mnl_attr_get_u64(a);
			break;
		}
	}
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
				parse_target(a, r);
			break;
		case PORTDISPATCH_A_RULE_STATS:
			if (valid(a, MNL_TYPE_NESTED))
				parse_stats(a, r);
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
	return has_proto && has_port ? 0 : -1;
}

static const char *family_text(uint8_t family)
{
	switch (family) {
	case 0:
		return "any";
	case AF_INET:
		return "ipv4";
	case AF_INET6:
		return "ipv6";
	}
	return "unknown";
}

static const char *sock_family_name(uint8_t family)
{
	switch (family) {
	case AF_INET:
		return "inet";
	case AF_INET6:
		return "inet6";
	}
	return "unknown";
}

/* Text and JSON names of enum portdispatch_sock_state. */
static void state_names(uint8_t state, const char **text, const char **json)
{
	switch (state) {
	case PORTDISPATCH_SOCK_STATE_LISTENING:
		*text = *json = "listening";
		return;
	case PORTDISPATCH_SOCK_STATE_BOUND:
		*text = *json = "bound";
		return;
	case PORTDISPATCH_SOCK_STATE_NOT_READY:
		*text = "not ready";
		*json = "not_ready";
		return;
	case PORTDISPATCH_SOCK_STATE_CLOSED:
		*text = *json = "closed";
		return;
	}
	*text = "unknown state";
	*json = "unknown";
}

static void format_addr(const uint8_t *addr, uint8_t len, char *buf,
			size_t size)
{
	if (!inet_ntop(len == 4 ? AF_INET : AF_INET6, addr, buf,
		       (socklen_t)size))
		snprintf(buf, size, "?");
}

static void format_dst(const struct rule *r, char *buf, size_t size)
{
	char addr[INET6_ADDRSTRLEN];

	format_addr(r->dst, r->dst_len, addr, sizeof(addr));
	snprintf(buf, size, "%s/%u", addr, r->dst_plen);
}

static void print_socket_target(const struct rule *r)
{
	const char *text, *json;

	print_string("type", NULL, "socket");
	if (r->target.has_pid)
		print_uint("pid", " pid %s", r->target.pid);
	else
		print_null("pid");
	if (r->target.comm[0])
		print_string("comm", " (%s)", r->target.comm);
	else
		print_null("comm");
	if (r->target.has_pid_fd)
		print_uint("fd", " fd %s", r->target.pid_fd);
	else
		print_null("fd");
	if (r->target.has_inode)
		print_uint("inode", NULL, r->target.inode);
	else
		print_null("inode");
	if (r->target.has_family)
		print_string("family", NULL,
			     sock_family_name(r->target.family));
	else
		print_null("family");
	print_bool("v6only", NULL, r->target.v6only);
	if (r->target.has_local_addr) {
		char addr[INET6_ADDRSTRLEN];

		format_addr(r->target.local_addr, r->target.local_addr_len,
			    addr, sizeof(addr));
		print_string("local_addr",
			     r->target.local_addr_len == 16 ? " [%s]" : " %s",
			     addr);
	} else {
		print_null("local_addr");
	}
	if (r->target.has_local_port)
		print_uint("local_port",
			   r->target.has_local_addr ? ":%s" : NULL,
			   r->target.local_port);
	else
		print_null("local_port");
	print_bool(NULL, " v6only", r->target.v6only);
	if (r->target.has_state) {
		state_names(r->target.state, &text, &json);
		print_enum("state", " %s", text, json);
	} else {
		print_null("state");
	}
}

void rule_print(const char *key, const struct rule *r, bool stats)
{
	const char *proto = proto_name(r->proto);
	char buf[INET6_ADDRSTRLEN + 8];

	print_open_object(key);
	if (r->has_id)
		print_uint("id", NULL, r->id);
	else
		print_null("id");
	if (proto) {
		print_string("proto", "%s", proto);
	} else {
		snprintf(buf, sizeof(buf), "ipproto-%u", r->proto);
		print_string("proto", "%s", buf);
	}
	print_uint("port_min", " %s", r->port_min);
	print_uint("port_max", r->port_max != r->port_min ? "-%s" : NULL,
		   r->port_max);
	print_string("family", " %s", family_text(r->family));
	if (r->has_dst) {
		format_dst(r, buf, sizeof(buf));
		print_string("dst", " dst %s", buf);
	} else {
		print_null("dst");
	}

	print_text(" ->");
	print_open_object("target");
	switch (r->target.type) {
	case RULE_TARGET_PORT:
		print_string("type", NULL, "port");
		print_uint("port", " port %s", r->target.port);
		break;
	case RULE_TARGET_SOCKET:
		print_socket_target(r);
		break;
	case RULE_TARGET_UNKNOWN:
		print_enum("type", " %s", "unknown target", "unknown");
		break;
	}
	print_close_object();

	/* JSON always has the counters; text only when asked (-s). */
	if (print_is_json() && !r->has_stats) {
		print_null("stats");
	} else if (print_is_json() || stats) {
		print_open_object("stats");
		print_uint("steered", " steered %s", r->steered);
		print_uint("undeliverable", " undeliverable %s",
			   r->undeliverable);
		/* Only UDP rules rewrite replies, and only newer modules. */
		if (r->has_replies)
			print_uint("replies", " replies %s", r->replies);
		else
			print_null("replies");
		print_close_object();
	}
	print_close_object();
}

bool rule_format_words(const struct rule *r, char *buf, size_t len)
{
	const char *proto = proto_name(r->proto);
	char dst[INET6_ADDRSTRLEN + 8] = "";
	char ports[24];

	if (r->port_max != r->port_min)
		snprintf(ports, sizeof(ports), "%u-%u", r->port_min,
			 r->port_max);
	else
		snprintf(ports, sizeof(ports), "%u", r->port_min);
	if (r->has_dst)
		format_dst(r, dst, sizeof(dst));
	snprintf(buf, len, "%s %s%s%s", proto ? proto : "?", ports,
		 r->has_dst ? " dst " : "", dst);
	return proto && (r->family == 0 || r->family == AF_INET ||
			 r->family == AF_INET6);
}

const char *rule_family_option(const struct rule *r)
{
	switch (r->family) {
	case AF_INET:
		return "-4 ";
	case AF_INET6:
		return "-6 ";
	}
	return "";
}

void rule_format_target(const struct rule *r, char *buf, size_t len)
{
	char comm[sizeof(r->target.comm)];
	size_t n;

	/*
	 * A process names itself: a newline in its comm must not end the
	 * comment that save writes it in, and so slip a command into the file.
	 */
	copy_printable(comm, sizeof(comm), r->target.comm);

	switch (r->target.type) {
	case RULE_TARGET_PORT:
		snprintf(buf, len, "port %u", r->target.port);
		return;
	case RULE_TARGET_SOCKET:
		snprintf(buf, len, "pid %u", r->target.pid);
		n = strlen(buf);
		if (comm[0] && n < len)
			snprintf(buf + n, len - n, " (%s)", comm);
		n = strlen(buf);
		if (r->target.has_pid_fd && n < len)
			snprintf(buf + n, len - n, " fd %u", r->target.pid_fd);
		return;
	case RULE_TARGET_UNKNOWN:
		break;
	}
	snprintf(buf, len, "an unknown target");
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
