// SPDX-License-Identifier: GPL-2.0
/*
 * pdnl: one portdispatch netlink socket that a shell test drives line by
 * line, for what portctl cannot do: keep a batch open, fall silent in the
 * middle of it, and go on on the same socket.
 *
 *   pdnl < COMMANDS
 *
 * Prints "ready portid=N" once the socket is open, then one line per
 * command, as it comes:
 *   begin | commit | abort | flush
 *   add PROTO PORT[-PORT] TPORT	(RULE_ADD of PROTO PORT to port TPORT)
 *   replace PROTO PORT[-PORT] TPORT	(RULE_REPLACE, the same way)
 *   adds PROTO PORT COUNT TPORT	(COUNT adds, of PORT, PORT+1...: "ok"
 *				 once all are, or the first one's error)
 *   sock PROTO PORT		(a socket of pdnl's own, a TCP listener or a
 *				 bound UDP socket on 127.0.0.1, and RULE_ADD
 *				 of PROTO PORT to it; it stays open)
 *   del PROTO PORT[-PORT]
 *   list			(a dump: "ok N" for N rules)
 *   family NAME		(nlctrl's CTRL_CMD_GETFAMILY for NAME)
 *   join			(the "events" group, never read)
 *   sleep MS			(here, without a fork's jitter)
 *   time COMMAND		(the answer after the microseconds it took)
 * Each answer is "ok", or "error NAME MESSAGE" with the kernel's errno
 * (ETIMEDOUT...) and its extended-ack message, or "error local ..." when
 * the kernel did not answer at all. Exits at the end of its input.
 */

#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#pragma GCC diagnostic pop

static int proto_of(const char *s)
{
	if (!strcmp(s, "tcp"))
		return IPPROTO_TCP;
	if (!strcmp(s, "udp"))
		return IPPROTO_UDP;
	return -1;
}

/* "80" or "80-90"; port_max 0 when there is no range. */
static int ports_of(const char *s, uint32_t *lo, uint32_t *hi)
{
	char *end;

	*lo = strtoul(s, &end, 10);
	*hi = 0;
	if (*end == '-')
		*hi = strtoul(end + 1, &end, 10);
	return *end || !*lo ? -1 : 0;
}

/* CTRL_CMD_GETFAMILY for @name: the kernel's errno, 0 when it answered. */
static int get_family(struct pdn *n, const char *name, struct pdn_status *st)
{
	struct pdn_req r;
	int err;

	pdn_req_getfamily(n, &r, name);
	err = pdn_send(n, &r);
	if (err) {
		st->err = -err;
		st->local = true;
		return st->err;
	}
	/* The family's description (not of our family), then the ack. */
	pdn_wait(n, r.nlh->nlmsg_seq, st);
	return st->err;
}

/* Runs one command line; its answer in @out. */
static void run(struct pdn *n, char *line, char *out, size_t len)
{
	char cmd[16] = "", a1[16] = "", a2[16] = "", a3[16] = "", a4[16] = "";
	struct pdn_status st = { 0 };
	int words = sscanf(line, "%15s %15s %15s %15s %15s", cmd, a1, a2, a3,
			   a4);
	int proto = proto_of(a1), err;
	uint32_t lo, hi;

	if (!strcmp(cmd, "time")) {
		struct timespec t0, t1;
		char inner[400];

		clock_gettime(CLOCK_MONOTONIC, &t0);
		run(n, strstr(line, "time") + 4, inner, sizeof(inner));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		snprintf(out, len, "%lld %s",
			 (t1.tv_sec - t0.tv_sec) * 1000000LL +
			 (t1.tv_nsec - t0.tv_nsec) / 1000, inner);
		return;
	}
	if (!strcmp(cmd, "begin")) {
		err = pdn_cmd(n, PORTDISPATCH_CMD_BATCH_BEGIN, &st);
	} else if (!strcmp(cmd, "commit")) {
		err = pdn_cmd(n, PORTDISPATCH_CMD_BATCH_COMMIT, &st);
	} else if (!strcmp(cmd, "abort")) {
		err = pdn_cmd(n, PORTDISPATCH_CMD_BATCH_ABORT, &st);
	} else if (!strcmp(cmd, "flush")) {
		err = pdn_cmd(n, PORTDISPATCH_CMD_FLUSH, &st);
	} else if ((!strcmp(cmd, "add") || !strcmp(cmd, "replace")) &&
		   words == 4 && proto > 0 && !ports_of(a2, &lo, &hi)) {
		err = pdn_rule_to_port(n, !strcmp(cmd, "add") ?
				       PORTDISPATCH_CMD_RULE_ADD :
				       PORTDISPATCH_CMD_RULE_REPLACE,
				       proto, lo, hi, atoi(a3), &st);
	} else if (!strcmp(cmd, "adds") && words == 5 && proto > 0 &&
		   !ports_of(a2, &lo, &hi) && !hi) {
		long i, count = atol(a3);

		for (i = 0, err = 0; i < count && !err; i++)
			err = pdn_rule_to_port(n, PORTDISPATCH_CMD_RULE_ADD,
					       proto, lo + i, 0, atoi(a4), &st);
	} else if (!strcmp(cmd, "sock") && words == 3 && proto > 0 &&
		   !ports_of(a2, &lo, &hi) && !hi) {
		int fd = pd_server(AF_INET, proto == IPPROTO_TCP ?
				   SOCK_STREAM : SOCK_DGRAM, "127.0.0.1", 0,
				   false);

		if (fd < 0) {
			snprintf(out, len, "error local socket: %s",
				 strerror(errno));
			return;
		}
		err = pdn_rule_to_fd(n, PORTDISPATCH_CMD_RULE_ADD, proto, lo,
				     fd, &st);
	} else if (!strcmp(cmd, "del") && words == 3 && proto > 0 &&
		   !ports_of(a2, &lo, &hi)) {
		err = pdn_del(n, proto, lo, hi, &st);
	} else if (!strcmp(cmd, "list") && words == 1) {
		struct pdn_dump d;

		err = pdn_dump(n, &d);
		if (!err) {
			snprintf(out, len, "ok %u", d.count);
			pdn_dump_free(&d);
			return;
		}
		st.err = err;
		memcpy(st.msg, d.msg, sizeof(st.msg));
		pdn_dump_free(&d);
	} else if (!strcmp(cmd, "family") && words == 2) {
		err = get_family(n, a1, &st);
	} else if (!strcmp(cmd, "join") && words == 1) {
		err = -pdn_join_events(n);
		snprintf(st.msg, sizeof(st.msg), "%s", strerror(err));
		st.local = true;
	} else if (!strcmp(cmd, "sleep") && words == 2) {
		long ms = atol(a1);
		struct timespec ts = { ms / 1000, ms % 1000 * 1000000 };

		while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts))
			;
		err = 0;
	} else {
		snprintf(out, len, "usage: %s", line);
		out[strcspn(out, "\n")] = '\0';
		return;
	}
	if (!err)
		snprintf(out, len, "ok");
	else if (st.local)
		snprintf(out, len, "error local %s", st.msg);
	else
		snprintf(out, len, "error %s %s", strerrorname_np(err) ?: "?",
			 st.msg);
}

int main(void)
{
	char line[256], out[512];
	struct pdn n;
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	err = pdn_open(&n);
	if (err) {
		fprintf(stderr, "pdnl: cannot open the family: %s\n",
			strerror(-err));
		return 1;
	}
	printf("ready portid=%u\n", n.portid);

	while (fgets(line, sizeof(line), stdin)) {
		if (strspn(line, " \t\n") == strlen(line))
			continue;
		run(&n, line, out, sizeof(out));
		printf("%s\n", out);
	}
	pdn_close(&n);
	return 0;
}
