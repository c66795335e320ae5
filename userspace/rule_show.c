// SPDX-License-Identifier: GPL-2.0
/* Rules as text and JSON, and in a batch line's words. */
#include "rule_show.h"

#include <arpa/inet.h>
#include <linux/portdispatch.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "print.h"
#include "util.h"

const char *rule_family_text(uint8_t family)
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

void rule_format_dst(const struct rule *r, char *buf, size_t size)
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
	print_string("family", " %s", rule_family_text(r->family));
	if (r->has_dst) {
		rule_format_dst(r, buf, sizeof(buf));
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
		rule_format_dst(r, dst, sizeof(dst));
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

/* raw: the process's name as it is, for a caller that escapes it. */
static void format_target(const struct rule_target *t, bool placeholders,
			  bool raw, char *buf, size_t len)
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
		if (raw)
			snprintf(comm, sizeof(comm), "%s", t->comm);
		else
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
		format_target(t, placeholders, false, buf, len);
		if (t->has_weight)
			append(buf, len, " weight %u", t->weight);
	}
	if (!r->ntargets)
		append(buf, len, "an unknown target");
}

void rule_format_target(const struct rule_target *t, char *buf, size_t len)
{
	if (!len)
		return;
	buf[0] = '\0';
	format_target(t, false, true, buf, len);
}
