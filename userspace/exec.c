// SPDX-License-Identifier: GPL-2.0
/*
 * portctl exec: run a server on ports it could not bind itself. portctl
 * makes a socket for each "{tcp|udp} PORT" clause where no privilege is
 * needed (an ephemeral port), adds the rules that send those ports to
 * them, becomes the user asked for and execs the server in its own
 * process. The server receives the sockets as systemd passes them
 * (sd_listen_fds(3)), so the rules' pid is the server's, and each rule
 * leaves the table when the server's socket closes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/portdispatch.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "commands.h"
#include "nl.h"
#include "privs.h"
#include "util.h"

/* Where sd_listen_fds(3) looks for the first socket. */
#define LISTEN_FDS_START	3
#define EXEC_SOCKETS_MAX	16

struct exec_request {
	uint8_t family;		/* -4/-6, before or after "exec" */
	bool replace;		/* --replace */
	const char *user;	/* -u as written */
	struct run_as who;	/* ... and looked up */
	size_t n;
	struct rule_spec specs[EXEC_SOCKETS_MAX];
	int fds[EXEC_SOCKETS_MAX];
	char **command;		/* after "--" */
	char *path;		/* the file command names */
};

static bool is_proto(const char *word)
{
	return !strcmp(word, "tcp") || !strcmp(word, "udp");
}

static int set_family(struct exec_request *r, uint8_t family)
{
	if (r->family && r->family != family) {
		errorf("give at most one of -4 and -6");
		return EXIT_USAGE;
	}
	r->family = family;
	return 0;
}

/* The options after "exec": how many words they took, or -1 having said why. */
static int parse_options(int argc, char **argv, struct exec_request *r)
{
	int i;

	for (i = 0; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
		const char *w = argv[i];

		if (!strcmp(w, "-4") || !strcmp(w, "-6")) {
			if (set_family(r, w[1] == '4' ? AF_INET : AF_INET6))
				return -1;
		} else if (!strcmp(w, "--replace")) {
			r->replace = true;
		} else if (!strcmp(w, "-u") || !strcmp(w, "--user")) {
			if (i + 1 >= argc || !strcmp(argv[i + 1], "--")) {
				errorf("%s needs a user (USER or USER:GROUP)", w);
				return -1;
			}
			r->user = argv[++i];
		} else if (!strncmp(w, "--user=", 7)) {
			r->user = w + 7;
		} else if (!strncmp(w, "-u", 2)) {
			r->user = w + 2;
		} else {
			errorf("unknown option \"%s\" for exec; try \"portctl exec help\"",
			       w);
			return -1;
		}
	}
	return i;
}

/* "{tcp|udp} PORT[-PORT] [dst PREFIX]", one or more, before "--". */
static int parse_clauses(int argc, char **argv, struct exec_request *r)
{
	int i = 0;

	if (argc == 0) {
		errorf("exec needs a protocol (tcp or udp) and a port; try \"portctl exec help\"");
		return EXIT_USAGE;
	}
	if (!is_proto(argv[0])) {
		errorf("expected tcp or udp, not \"%s\"; try \"portctl exec help\"",
		       argv[0]);
		return EXIT_USAGE;
	}
	while (i < argc) {
		int end = i + 1, j;

		while (end < argc && !is_proto(argv[end]))
			end++;
		for (j = i; j < end; j++) {
			if (!strcmp(argv[j], "to")) {
				errorf("exec makes the target itself: leave out \"to ...\"");
				return EXIT_USAGE;
			}
			if (argv[j][0] == '-' && argv[j][1]) {
				errorf("exec's options go before its ports (found \"%s\" after \"%s\")",
				       argv[j], argv[i]);
				return EXIT_USAGE;
			}
		}
		if (r->n == EXEC_SOCKETS_MAX) {
			errorf("exec passes at most %d sockets", EXEC_SOCKETS_MAX);
			return EXIT_USAGE;
		}
		/* Parsed as a "del" would be: the words name a rule, no target. */
		if (parse_rule("exec", PORTDISPATCH_CMD_RULE_DEL, r->family,
			       end - i, argv + i, &r->specs[r->n]))
			return EXIT_USAGE;
		r->specs[r->n].cmd = r->replace ? PORTDISPATCH_CMD_RULE_REPLACE :
						  PORTDISPATCH_CMD_RULE_ADD;
		r->n++;
		i = end;
	}
	return 0;
}

static int parse_exec(int argc, char **argv, const struct options *opt,
		      struct exec_request *r)
{
	int i, sep, ret;

	memset(r, 0, sizeof(*r));
	if (opt->family && set_family(r, opt->family))
		return EXIT_USAGE;
	i = parse_options(argc, argv, r);
	if (i < 0)
		return EXIT_USAGE;
	for (sep = i; sep < argc && strcmp(argv[sep], "--"); sep++)
		;
	if (sep == argc) {
		errorf("exec needs \"-- COMMAND\" after its ports; try \"portctl exec help\"");
		return EXIT_USAGE;
	}
	if (sep + 1 == argc) {
		errorf("exec needs a command after \"--\"");
		return EXIT_USAGE;
	}
	ret = parse_clauses(sep - i, argv + i, r);
	if (ret)
		return ret;
	r->command = argv + sep + 1;
	/* The words first: a usage error is told before a missing user. */
	return r->user ? run_as_resolve(r->user, &r->who) : 0;
}

static void exec_request_free(struct exec_request *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		spec_free(&r->specs[i]);
	run_as_free(&r->who);
	free(r->path);
}

static void close_sockets(struct exec_request *r, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		close(r->fds[i]);
}

/*
 * An ephemeral port needs no privilege. A rule for one address binds to
 * it (IP_FREEBIND: also before the address is configured), so the
 * server's own port is not open on every address; a rule for both
 * families gets one IPv6 socket that takes IPv4 too.
 */
static int make_socket(const struct rule_spec *spec)
{
	int af = spec_family(spec), type, fd, err, on = 1, off = 0;
	bool host = spec->has_dst &&
		    spec->dst_plen == (spec->dst_family == AF_INET ? 32 : 128);
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	char words[96];

	type = spec->proto == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM;
	fd = socket(af ? af : AF_INET6, type | SOCK_CLOEXEC, 0);
	if (fd < 0 && !af && errno == EAFNOSUPPORT) {
		af = AF_INET;	/* IPv6 is off: the kernel narrows the rule */
		fd = socket(af, type | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		goto fail;
	if (!af) {
		af = AF_INET6;
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)))
			goto fail;
	}
	if (af == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		if (host)
			memcpy(&sin->sin_addr, spec->dst, 4);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		if (host)
			memcpy(&sin6->sin6_addr, spec->dst, 16);
		len = sizeof(*sin6);
	}
	if (host && setsockopt(fd, af == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
			       af == AF_INET ? IP_FREEBIND : IPV6_FREEBIND,
			       &on, sizeof(on)))
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, len))
		goto fail;
	if (type == SOCK_STREAM && listen(fd, SOMAXCONN))
		goto fail;
	return fd;
fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	spec_words(spec, words, sizeof(words));
	errorf("could not make the socket for %s: %s", words, strerror(err));
	return -1;
}

/*
 * Puts the sockets at 3, 4, ... in the order of the clauses, without
 * close-on-exec; whatever was there before goes. Each is first moved
 * above that range, so that none lands on another.
 */
static int place_sockets(struct exec_request *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		int fd = fcntl(r->fds[i], F_DUPFD_CLOEXEC,
			       LISTEN_FDS_START + (int)r->n);

		if (fd < 0)
			goto fail;
		close(r->fds[i]);
		r->fds[i] = fd;
	}
	for (i = 0; i < r->n; i++) {
		int fd = LISTEN_FDS_START + (int)i;

		if (dup2(r->fds[i], fd) < 0)
			goto fail;
		close(r->fds[i]);
		r->fds[i] = fd;
	}
	return 0;
fail:
	errorf("could not place the sockets at fd %d and up: %s",
	       LISTEN_FDS_START, strerror(errno));
	return -1;
}

static int make_sockets(struct exec_request *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		r->fds[i] = make_socket(&r->specs[i]);
		if (r->fds[i] < 0) {
			close_sockets(r, i);
			return -1;
		}
	}
	if (place_sockets(r)) {
		close_sockets(r, r->n);
		return -1;
	}
	for (i = 0; i < r->n; i++) {
		struct target_spec *t = xcalloc(1, sizeof(*t));

		t->kind = SPEC_TARGET_SOCKET;
		t->fd = r->fds[i];
		t->pid = (uint32_t)getpid();
		t->has_pid_fd = true;
		t->pid_fd = (uint32_t)r->fds[i];
		r->specs[i].targets = t;
		r->specs[i].ntargets = 1;
	}
	return 0;
}

/* One request; -1 with st filled in, and *req the message, for a report. */
static int request(struct nl *nl, void *buf, uint8_t cmd,
		   const struct rule_spec *spec, struct nlmsghdr **req,
		   struct nl_status *st)
{
	*req = nl_msg_start(nl, buf, cmd, 0);
	if (spec)
		rule_put_spec(*req, spec);
	return nl_request(nl, *req, NULL, NULL, st);
}

/*
 * Every rule, or none: several go in one batch. Returns 0, or -1 with
 * st, the failed request in buf and *failed its rule (NULL: BEGIN or
 * COMMIT).
 */
static int try_add_rules(struct exec_request *r, void *buf,
			 struct nlmsghdr **req, const struct rule_spec **failed,
			 struct nl_status *st)
{
	bool batch = r->n > 1;
	struct nl nl;
	size_t i;
	int ret = -1;

	*failed = NULL;
	if (nl_open(&nl)) {
		st->code = 0;	/* said why */
		return -1;
	}
	if (batch && request(&nl, buf, PORTDISPATCH_CMD_BATCH_BEGIN, NULL, req, st))
		goto out;
	for (i = 0; i < r->n; i++) {
		*failed = &r->specs[i];
		if (request(&nl, buf, r->specs[i].cmd, *failed, req, st))
			goto out;	/* closing the socket aborts the batch */
	}
	*failed = NULL;
	if (batch && request(&nl, buf, PORTDISPATCH_CMD_BATCH_COMMIT, NULL, req, st))
		goto out;
	ret = 0;
out:
	nl_close(&nl);
	return ret;
}

/*
 * Another socket's batch (a reload of the boot-time rules) refuses changes
 * with EBUSY for the few milliseconds it is open: a server started at
 * that moment waits for it, up to EXEC_BUSY_WAIT_MS, rather than fail.
 */
#define EXEC_BUSY_WAIT_MS	2000
#define EXEC_BUSY_POLL_MS	20

static int add_rules(struct exec_request *r)
{
	const struct rule_spec *failed;
	char buf[NL_MSG_MAX];
	struct nlmsghdr *req;
	struct nl_status st;
	int waited = 0;

	while (try_add_rules(r, buf, &req, &failed, &st)) {
		if (st.code == EBUSY && waited < EXEC_BUSY_WAIT_MS) {
			usleep(EXEC_BUSY_POLL_MS * 1000);
			waited += EXEC_BUSY_POLL_MS;
			continue;
		}
		if (!st.code)
			;	/* nl_open() said why */
		else if (failed)
			report_rule_error(&st, failed, req);
		else
			nl_report(&st, nl_cmd(req) == PORTDISPATCH_CMD_BATCH_BEGIN ?
				  "open a batch" : "commit the batch", true);
		return -1;
	}
	return 0;
}

/* What sd_listen_fds_with_names(3) reads, and what User= would set. */
static int set_environment(const struct exec_request *r)
{
	char num[16], names[EXEC_SOCKETS_MAX * 24] = "";
	size_t i, used = 0;
	int ret = 0;

	for (i = 0; i < r->n; i++) {
		const struct rule_spec *s = &r->specs[i];

		used += (size_t)snprintf(names + used, sizeof(names) - used,
					 "%s%s-%u", i ? ":" : "",
					 s->proto == IPPROTO_TCP ? "tcp" : "udp",
					 s->port_min);
		if (s->has_port_max)
			used += (size_t)snprintf(names + used,
						 sizeof(names) - used, "-%u",
						 s->port_max);
	}
	snprintf(num, sizeof(num), "%zu", r->n);
	ret |= setenv("LISTEN_FDS", num, 1);
	snprintf(num, sizeof(num), "%d", (int)getpid());
	ret |= setenv("LISTEN_PID", num, 1);
	ret |= setenv("LISTEN_FDNAMES", names, 1);
	/* Newer systemd names the process by pidfd too; ours would not match. */
	ret |= unsetenv("LISTEN_PIDFDID");
	if (r->who.name) {
		ret |= setenv("USER", r->who.name, 1);
		ret |= setenv("LOGNAME", r->who.name, 1);
		ret |= setenv("HOME", r->who.home, 1);
		ret |= setenv("SHELL", r->who.shell, 1);
	}
	if (ret)
		errorf("could not set the environment: %s", strerror(errno));
	return ret ? -1 : 0;
}

int cmd_exec(int argc, char **argv, const struct options *opt)
{
	struct exec_request r;
	char *base;
	int ret;

	ret = parse_exec(argc, argv, opt, &r);
	if (ret) {
		exec_request_free(&r);
		return ret;
	}
	ret = EXIT_ERROR;
	r.path = run_as_find_command(&r.who, r.command[0]);
	if (!r.path || make_sockets(&r))
		goto out;
	/*
	 * The kernel keeps the name the process has when the rule is added:
	 * give it the one exec will, so that list names the server.
	 */
	base = xstrdup(r.path);
	prctl(PR_SET_NAME, basename(base), 0, 0, 0);
	free(base);
	if (add_rules(&r) || set_environment(&r) ||
	    (r.who.set && run_as_become(&r.who)))
		goto fail;
	execv(r.path, r.command);
	errorf("could not run %s: %s", r.path, strerror(errno));
fail:
	/* The kernel sees them close, and takes their rules away. */
	close_sockets(&r, r.n);
out:
	exec_request_free(&r);
	return ret;
}
