// SPDX-License-Identifier: GPL-2.0
#include "rule.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/portdispatch.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
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

static void print_socket_target(const struct rule_target *t)
{
	const char *text, *json;

	print_string("type", NULL, "socket");
	if (t->has_pid)
		print_uint("pid", " pid %s", t->pid);
	else
		print_null("pid");
	if (t->comm[0])
		print_string("comm", " (%s)", t->comm);
	else
		print_null("comm");
	if (t->has_pid_fd)
		print_uint("fd", " fd %s", t->pid_fd);
	else
		print_null("fd");
	if (t->has_inode)
		print_uint("inode", NULL, t->inode);
	else
		print_null("inode");
	if (t->has_family)
		print_string("family", NULL,
			     sock_family_name(t->family));
	else
		print_null("family");
	print_bool("v6only", NULL, t->v6only);
	if (t->has_local_addr) {
		char addr[INET6_ADDRSTRLEN];

		format_addr(t->local_addr, t->local_addr_len,
			    addr, sizeof(addr));
		print_string("local_addr",
			     t->local_addr_len == 16 ? " [%s]" : " %s",
			     addr);
	} else {
		print_null("local_addr");
	}
	if (t->has_local_port)
		print_uint("local_port",
			   t->has_local_addr ? ":%s" : NULL,
			   t->local_port);
	else
		print_null("local_port");
	print_bool(NULL, " v6only", t->v6only);
	if (t->has_state) {
		state_names(t->state, &text, &json);
		print_enum("state", " %s", text, json);
	} else {
		print_null("state");
	}
}

/* A target's own keys: those of "target" in a rule of one. */
static void print_target(const struct rule_target *t)
{
	switch (t->type) {
	case RULE_TARGET_PORT:
		print_string("type", NULL, "port");
		print_uint("port", " port %s", t->port);
		break;
	case RULE_TARGET_SOCKET:
		print_socket_target(t);
		break;
	case RULE_TARGET_UNKNOWN:
		print_enum("type", " %s", "unknown target", "unknown");
		break;
	}
}

/*
 * "targets": each with its weight and its counters, which the kernel
 * reports for the targets of a group only (null for a rule of one).
 */
static void print_targets(const struct rule *r, bool stats)
{
	size_t i;

	print_open_array("targets");
	for (i = 0; i < r->ntargets; i++) {
		const struct rule_target *t = &r->targets[i];

		print_text(i ? "," : "");
		print_open_object(NULL);
		print_target(t);
		if (t->has_weight)
			print_uint("weight", " weight %s", t->weight);
		else
			print_null("weight");
		if (t->has_stats && (print_is_json() || stats)) {
			print_open_object("stats");
			print_uint("steered", " steered %s", t->steered);
			print_uint("undeliverable", " undeliverable %s",
				   t->undeliverable);
			print_close_object();
		} else {
			print_null("stats");
		}
		print_close_object();
	}
	print_close_array();
	if (!r->ntargets)
		print_text(" unknown target");
}

/*
 * "target", in JSON only: a rule of one target's, as it always was; of a
 * group, {"type":"group"}, a type that readers of "target" alone do not
 * know, rather than one of its targets, which would hide the others.
 */
static void print_target_key(const struct rule *r)
{
	if (!print_is_json())
		return;
	print_open_object("target");
	if (rule_is_group(r))
		print_string("type", NULL, "group");
	else if (r->ntargets)
		print_target(&r->targets[0]);
	else
		print_string("type", NULL, "unknown");
	print_close_object();
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
	print_target_key(r);
	print_targets(r, stats);

	/* JSON always has the counters; text only when asked (-s). */
	if (print_is_json() && !r->has_stats) {
		print_null("stats");
	} else if (print_is_json() || stats) {
		/* After a group's targets and theirs: the rule's own. */
		if (rule_is_group(r))
			print_text("; total");
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

/* Appends to buf, which holds a string; what does not fit is cut. */
static void append(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

static void format_target(const struct rule_target *t, bool placeholders,
			  char *buf, size_t len)
{
	char comm[sizeof(t->comm)];

	switch (t->type) {
	case RULE_TARGET_PORT:
		append(buf, len, "port %u", t->port);
		return;
	case RULE_TARGET_SOCKET:
		if (placeholders) {
			append(buf, len, "pid PID fd FD");
			return;
		}
		/*
		 * A process names itself: a newline in its comm must not end
		 * the comment that save writes it in, and so slip a command
		 * into the file.
		 */
		copy_printable(comm, sizeof(comm), t->comm);
		append(buf, len, "pid %u", t->pid);
		if (comm[0])
			append(buf, len, " (%s)", comm);
		if (t->has_pid_fd)
			append(buf, len, " fd %u", t->pid_fd);
		return;
	case RULE_TARGET_UNKNOWN:
		break;
	}
	append(buf, len, "an unknown target");
}

void rule_format_targets(const struct rule *r, bool placeholders, char *buf,
			 size_t len)
{
	size_t i;

	if (!len)
		return;
	buf[0] = '\0';
	for (i = 0; i < r->ntargets; i++) {
		const struct rule_target *t = &r->targets[i];

		append(buf, len, "%s", i ? ", " : "");
		format_target(t, placeholders, buf, len);
		if (t->has_weight)
			append(buf, len, " weight %u", t->weight);
	}
	if (!r->ntargets)
		append(buf, len, "an unknown target");
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
