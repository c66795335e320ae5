// SPDX-License-Identifier: GPL-2.0
/* monitor: the table's changes, one line each, as they happen. */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/portdispatch.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "commands.h"
#include "nl.h"
#include "print.h"
#include "rule_show.h"
#include "util.h"

#define MONITOR_RCVBUF (32 * 1024 * 1024)

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void reason_names(const struct rule *r, const char **text,
			 const char **json)
{
	switch (r->has_reason ? r->reason : PORTDISPATCH_DEL_REASON_UNSPEC) {
	case PORTDISPATCH_DEL_REASON_REQUEST:
		*text = " (requested)";
		*json = "requested";
		return;
	case PORTDISPATCH_DEL_REASON_SOCKET_CLOSED:
		*text = " (socket closed)";
		*json = "socket_closed";
		return;
	case PORTDISPATCH_DEL_REASON_REPLACED:
		*text = " (replaced)";
		*json = "replaced";
		return;
	}
	*text = "";
	*json = NULL;
}

static void print_event(uint8_t cmd, const struct rule *r)
{
	const char *text, *json;

	print_open_object(NULL);
	switch (cmd) {
	case PORTDISPATCH_CMD_RULE_ADD_NTF:
	case PORTDISPATCH_CMD_RULE_REPLACE_NTF:
		print_string("event", "%s ", cmd == PORTDISPATCH_CMD_RULE_ADD_NTF ?
			     "added" : "replaced");
		rule_print("rule", r, false);
		break;
	case PORTDISPATCH_CMD_RULE_DEL_NTF:
		reason_names(r, &text, &json);
		print_string("event", "%s ", "deleted");
		print_string("reason", NULL, json);
		rule_print("rule", r, false);
		print_text(text);	/* text says why last, after the rule */
		break;
	case PORTDISPATCH_CMD_FLUSH_NTF:
		print_string("event", "%s", "flushed");
		print_uint("count", " %s", r->count);
		print_text(r->count == 1 ? " rule" : " rules");
		break;
	}
	print_close_object();
	print_end_record();
	fflush(stdout);	/* readers wait on a pipe */
}

static int event_cb(enum nl_event ev, const struct nlmsghdr *nlh,
		    const struct nl_status *st, void *arg)
{
	uint8_t cmd = ev == NL_DATA ? nl_cmd(nlh) : 0;
	struct rule r;

	(void)st;
	(void)arg;
	switch (cmd) {
	case PORTDISPATCH_CMD_FLUSH_NTF:
		rule_parse(nlh, &r);	/* only RULE_COUNT is there */
		print_event(cmd, &r);
		rule_free(&r);
		break;
	case PORTDISPATCH_CMD_RULE_ADD_NTF:
	case PORTDISPATCH_CMD_RULE_REPLACE_NTF:
	case PORTDISPATCH_CMD_RULE_DEL_NTF:
		if (!rule_parse(nlh, &r)) {
			print_event(cmd, &r);
			rule_free(&r);
		}
		break;
	}
	return 0;
}

/*
 * Prints what the socket holds without waiting for more; -1 if reading
 * failed, having said why.
 */
static int read_events(struct nl *nl)
{
	while (nl_recv(nl, MSG_DONTWAIT, event_cb, NULL) >= 0)
		;
	if (errno == ENOBUFS) {
		warnf("events were lost: the receive buffer overflowed");
	} else if (errno != EAGAIN && errno != EINTR) {
		errorf("could not read events: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int cmd_monitor(int argc, char **argv, const struct options *opt)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t block, orig;
	struct pollfd pfd;
	struct nl nl;
	int ret = EXIT_OK;

	(void)opt;
	(void)argc;	/* main() has refused arguments */
	(void)argv;
	if (nl_open(&nl))
		return EXIT_ERROR;
	if (!nl.events_group) {
		errorf("the portdispatch module offers no \"%s\" group",
		       PORTDISPATCH_MCGRP_EVENTS);
		nl_close(&nl);
		return EXIT_ERROR;
	}
	if (mnl_socket_setsockopt(nl.sock, NETLINK_ADD_MEMBERSHIP,
				  &nl.events_group, sizeof(nl.events_group))) {
		if (errno == EPERM || errno == EACCES)
			errorf("watching the port table needs CAP_NET_ADMIN");
		else
			errorf("could not subscribe to the table's events: %s",
			       strerror(errno));
		nl_close(&nl);
		return EXIT_ERROR;
	}
	nl_grow_buffers(&nl, 0, MONITOR_RCVBUF);

	/*
	 * The signals stay blocked except inside ppoll(), so one that comes
	 * between the check of stop and the wait still ends the wait.
	 */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &orig);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	pfd.fd = nl.fd;
	pfd.events = POLLIN;
	while (!stop) {
		if (ppoll(&pfd, 1, NULL, &orig) < 0) {
			if (errno == EINTR)
				continue;
			errorf("could not wait for events: %s", strerror(errno));
			ret = EXIT_ERROR;
			break;
		}
		if (read_events(&nl)) {
			ret = EXIT_ERROR;
			break;
		}
	}
	/*
	 * Told to stop: the changes made before that are ours to print, and
	 * the socket may hold some still (ppoll() was woken by the signal, or
	 * it came while we were stopped). Leave the group first, so that the
	 * queue only shrinks, and print what it holds.
	 */
	if (stop) {
		mnl_socket_setsockopt(nl.sock, NETLINK_DROP_MEMBERSHIP,
				      &nl.events_group,
				      sizeof(nl.events_group));
		if (read_events(&nl))
			ret = EXIT_ERROR;
	}
	sigprocmask(SIG_SETMASK, &orig, NULL);
	nl_close(&nl);
	return ret;
}
