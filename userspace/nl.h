/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Generic netlink through libmnl: resolve the portdispatch family and its
 * events group, send requests, and read replies, acks and extended acks.
 */
#ifndef PORTCTL_NL_H
#define PORTCTL_NL_H

#include <libmnl/libmnl.h>
#include <stdbool.h>
#include <stdint.h>

/* What the kernel said about one request (code 0: an ack). */
struct nl_status {
	uint32_t seq;
	int code;		/* positive errno */
	char msg[256];		/* extack message, "" when none */
	bool has_offs;
	uint32_t offs;		/* offending attribute, from the message start */
};

struct nl {
	struct mnl_socket *sock;
	int fd;
	uint32_t seq;
	uint16_t family;	/* portdispatch's generic netlink id */
	uint32_t events_group;	/* 0: the family has none */
	bool dump_intr;		/* a reply carried NLM_F_DUMP_INTR */
	char *rxbuf;
	size_t rxlen;
};

enum nl_event {
	NL_DATA,		/* a message of the family */
	NL_STATUS,		/* NLMSG_ERROR: an error, or an ack (code 0) */
	NL_DONE,		/* end of a dump, possibly with an error */
};

/* Return 0 to go on reading, 1 to stop, -1 on a failure. */
typedef int (*nl_cb)(enum nl_event ev, const struct nlmsghdr *nlh,
		     const struct nl_status *st, void *arg);
typedef void (*nl_data_cb)(const struct nlmsghdr *nlh, void *arg);

/*
 * Opens a socket and resolves the family. Returns 0, or -1 having said why
 * (e.g. the module is not loaded).
 */
int nl_open(struct nl *nl);
void nl_close(struct nl *nl);

/*
 * Starts a request for cmd in buf, which must have NL_MSG_MAX bytes: they
 * are cleared, and one request with a rule takes far less.
 */
#define NL_MSG_MAX 1024
struct nlmsghdr *nl_msg_start(struct nl *nl, void *buf, uint8_t cmd,
			      uint16_t flags);

int nl_send(struct nl *nl, const void *buf, size_t len);

/* Reads one datagram and hands its messages to cb; -1 with errno. */
int nl_recv(struct nl *nl, int flags, nl_cb cb, void *arg);

/*
 * Sends req and reads until its ack (a "do"; NLM_F_ACK is set here) or its
 * NLMSG_DONE (a dump), handing replies to data. Returns 0, or -1 with st
 * filled in: the kernel's errno and extack, or a local errno.
 */
int nl_request(struct nl *nl, struct nlmsghdr *req, nl_data_cb data,
	       void *arg, struct nl_status *st);

/* The genetlink command of a message of the family. */
uint8_t nl_cmd(const struct nlmsghdr *nlh);

/* Raises the socket buffers, forcing them when privileged. */
void nl_grow_buffers(struct nl *nl, int sndbuf, int rcvbuf);

/*
 * Says what went wrong with a request, as a sentence: the kernel's own
 * message when there is one, else what was being done ("add the rule")
 * and strerror. changes: the request would change the table (for the
 * message about CAP_NET_ADMIN).
 */
void nl_report(const struct nl_status *st, const char *doing, bool changes);

#endif
