/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Words to a rule request. Only syntax is checked here: a value that can
 * be encoded is sent as written, and the kernel judges its range (port 0,
 * 70000, a reversed range, /33 on IPv4) and explains its refusal. The
 * exceptions: a prefix of IPv4-mapped addresses, which could match
 * nothing, refused here too with what to write instead; and the limits
 * that the target list's grammar states itself (16 targets, weights
 * 1-255), so that a list is refused as a whole before any of its sockets
 * is taken.
 */
#ifndef PORTCTL_PARSE_H
#define PORTCTL_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum spec_target {
	SPEC_TARGET_NONE,
	SPEC_TARGET_SOCKET,	/* to pid PID [fd FD] */
	SPEC_TARGET_PORT,	/* to port PORT */
};

/* One target of a rule, as written. */
struct target_spec {
	enum spec_target kind;
	uint32_t pid;
	bool has_pid_fd;
	uint32_t pid_fd;
	uint32_t port;		/* SPEC_TARGET_PORT */
	bool has_weight;	/* "weight W" was written */
	uint32_t weight;	/* 1-SPEC_WEIGHT_MAX */
	int fd;			/* our copy of a socket target; -1 until taken */
};

/* The target list's limits, which its grammar states (portctl(8)). */
#define SPEC_TARGETS_MAX	16
#define SPEC_WEIGHT_MAX		255

struct rule_spec {
	uint8_t cmd;		/* PORTDISPATCH_CMD_RULE_ADD/_REPLACE/_DEL */
	uint8_t proto;		/* IPPROTO_TCP or IPPROTO_UDP */
	uint32_t port_min;
	uint32_t port_max;
	bool has_port_max;	/* "PORT-PORT" was written */
	uint8_t family;		/* -4/-6: AF_INET or AF_INET6; 0: any */
	bool has_dst;
	uint8_t dst_family;
	uint8_t dst[16];
	uint8_t dst_plen;
	size_t ntargets;	/* 0: no "to" (del) */
	struct target_spec *targets;	/* allocated: see spec_free() */
};

/*
 * Parses "{tcp|udp} PORT[-PORT] [dst PREFIX] [to TARGET-LIST]" for cmd, whose
 * name is used in messages; family comes from -4/-6. Returns 0, the
 * spec to be freed with spec_free(), or EXIT_USAGE having said why (and
 * nothing to free).
 */
int parse_rule(const char *name, uint8_t cmd, uint8_t family,
	       int argc, char **argv, struct rule_spec *spec);

/* Frees what parse_rule() allocated; the fds are the caller's to close. */
void spec_free(struct rule_spec *spec);

/* The family a rule is limited to: -4/-6, else its prefix's, else 0. */
uint8_t spec_family(const struct rule_spec *spec);

/* The rule in the user's words, without target: "tcp 80-90 dst ::1/128". */
void spec_words(const struct rule_spec *spec, char *buf, size_t len);

#endif
