// SPDX-License-Identifier: GPL-2.0
/*
 * -b FILE: one portctl command a line, applied as one transaction.
 *
 * The whole file is parsed before anything is sent, so a typo on the last
 * line changes nothing. Then BATCH_BEGIN, the commands, BATCH_COMMIT: the
 * kernel applies all of them or none. The commands go without NLM_F_ACK,
 * many to a sendmsg(): the kernel handles them during the call and answers
 * only the ones it refuses, so 65,536 lines cost a few dozen system calls
 * instead of 65,536 round trips. An error's sequence number leads back to
 * its line.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/portdispatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "commands.h"
#include "nl.h"
#include "target.h"
#include "util.h"

#define MAX_WORDS	128	/* a valid line has at most 118 (16 targets) */
#define MAX_REPORTED	10	/* errors said before summing up the rest */
#define CHUNK_MAX	(1024 * 1024)
#define SNDBUF_WANTED	(4 * 1024 * 1024)
#define RCVBUF_WANTED	(32 * 1024 * 1024)

struct batch_line {
	unsigned int line;
	struct rule_spec spec;	/* spec.cmd is also FLUSH */
};

/* Copies of sockets, shared by the targets that name the same one. */
struct socket_copy {
	uint32_t pid;
	bool has_pid_fd;
	uint32_t pid_fd;
	uint8_t proto;
	uint8_t family;
	uint32_t found_fd;	/* the fd it turned out to be */
	int fd;
};

struct batch {
	const char *path;	/* as given: "-" for standard input */
	struct batch_line *lines;
	size_t n, cap;
	struct socket_copy *copies;
	size_t ncopies, capcopies;

	uint32_t first_seq;	/* lines[i] goes with first_seq + i */
	size_t sent;		/* lines sent so far */
	uint32_t wait_seq;	/* BEGIN, COMMIT: the one we await */
	bool got_status;
	struct nl_status status;
	size_t refused;		/* lines the kernel refused */
	bool lost;		/* errors lost to a full receive buffer */
};

static void batch_free(struct batch *b)
{
	size_t i;

	for (i = 0; i < b->ncopies; i++)
		close(b->copies[i].fd);
	free(b->copies);
	for (i = 0; i < b->n; i++)
		spec_free(&b->lines[i].spec);
	free(b->lines);
}

/* Splits at blanks; a "#" starts a comment. Returns the word count. */
static int split(char *text, char **words)
{
	char *hash = strchr(text, '#');
	char *save = NULL, *w;
	int n = 0;

	if (hash)
		*hash = '\0';
	for (w = strtok_r(text, " \t\r\n\v\f", &save); w;
	     w = strtok_r(NULL, " \t\r\n\v\f", &save)) {
		if (n == MAX_WORDS)
			return -1;
		words[n++] = w;
	}
	return n;
}

static int parse_line(char **words, int n, struct batch_line *bl)
{
	static const struct {
		const char *name;
		uint8_t cmd;
	} allowed[] = {
		{ "add", PORTDISPATCH_CMD_RULE_ADD },
		{ "replace", PORTDISPATCH_CMD_RULE_REPLACE },
		{ "del", PORTDISPATCH_CMD_RULE_DEL },
		{ "flush", PORTDISPATCH_CMD_FLUSH },
	};
	static const char *const elsewhere[] = {
		"list", "stats", "monitor", "save", "help",
	};
	uint8_t family = 0;
	size_t k;
	int i = 0;

	for (; i < n && words[i][0] == '-'; i++) {
		if (strcmp(words[i], "-4") && strcmp(words[i], "-6")) {
			errorf("option \"%s\" is not allowed in a batch (only -4 and -6 are)",
			       words[i]);
			return -1;
		}
		if (family) {
			errorf("give at most one of -4 and -6");
			return -1;
		}
		family = words[i][1] == '4' ? AF_INET : AF_INET6;
	}
	if (i == n) {
		errorf("\"%s\" needs a command after it", words[i - 1]);
		return -1;
	}
	for (k = 0; k < ARRAY_SIZE(allowed); k++)
		if (!strcmp(words[i], allowed[k].name))
			break;
	if (k == ARRAY_SIZE(allowed)) {
		size_t e;

		for (e = 0; e < ARRAY_SIZE(elsewhere); e++)
			if (!strcmp(words[i], elsewhere[e]))
				break;
		if (e < ARRAY_SIZE(elsewhere))
			errorf("\"%s\" is not allowed in a batch (only add, replace, del and flush are)",
			       words[i]);
		else
			errorf("unknown command \"%s\" (a batch takes add, replace, del and flush)",
			       words[i]);
		return -1;
	}
	if (allowed[k].cmd == PORTDISPATCH_CMD_FLUSH) {
		memset(&bl->spec, 0, sizeof(bl->spec));
		bl->spec.cmd = PORTDISPATCH_CMD_FLUSH;
		if (family) {
			errorf("option -%c does not apply to flush",
			       family == AF_INET ? '4' : '6');
			return -1;
		}
		if (i + 1 < n) {
			errorf("flush takes no arguments (found \"%s\")",
			       words[i + 1]);
			return -1;
		}
		return 0;
	}
	return parse_rule(allowed[k].name, allowed[k].cmd, family, n - i - 1,
			  words + i + 1, &bl->spec) ? -1 : 0;
}

/*
 * Reads and parses the whole file; EXIT_USAGE after a syntax error. name
 * is the file in sentences: its path, or "standard input".
 */
static int read_batch(FILE *f, const char *name, struct batch *b)
{
	char *words[MAX_WORDS];
	char *text = NULL;
	size_t size = 0;
	unsigned int line = 0, errors = 0;
	int ret = EXIT_OK;
	ssize_t len;

	while ((len = getline(&text, &size, f)) >= 0) {
		struct batch_line bl;
		int n;

		error_set_place(b->path, ++line);
		/* split() would stop at it: "flush\0add ..." is no flush. */
		if (memchr(text, '\0', (size_t)len)) {
			errorf("the line holds a NUL byte (a batch file is text)");
		} else if ((n = split(text, words)) < 0) {
			errorf("too many words for a command");
		} else if (n == 0) {
			continue;
		} else if (!parse_line(words, n, &bl)) {
			if (b->n == b->cap) {
				b->cap = b->cap ? b->cap * 2 : 256;
				b->lines = xreallocarray(b->lines, b->cap,
							 sizeof(*b->lines));
			}
			bl.line = line;
			b->lines[b->n++] = bl;
			continue;
		}
		ret = EXIT_USAGE;
		if (++errors == MAX_REPORTED) {
			error_set_place(NULL, 0);
			errorf("stopped reading %s after %u errors",
			       name, errors);
			break;
		}
	}
	error_set_place(NULL, 0);
	if (ferror(f)) {
		errorf("could not read %s: %s", name, strerror(errno));
		ret = EXIT_ERROR;
	}
	free(text);
	return ret;
}

/* A target's socket: our copy, shared with earlier ones that name it. */
static int take_socket(struct batch *b, const struct rule_spec *s,
		       struct target_spec *t)
{
	uint8_t family = spec_family(s);
	struct socket_copy *c;
	size_t i;

	for (i = 0; i < b->ncopies; i++) {
		c = &b->copies[i];
		if (c->pid == t->pid && c->has_pid_fd == t->has_pid_fd &&
		    (t->has_pid_fd ? c->pid_fd == t->pid_fd :
		     c->proto == s->proto && c->family == family)) {
			t->pid_fd = c->found_fd;
			t->fd = c->fd;
			return 0;
		}
	}
	t->fd = target_take(s, t);
	if (t->fd < 0)
		return -1;
	if (b->ncopies == b->capcopies) {
		b->capcopies = b->capcopies ? b->capcopies * 2 : 16;
		b->copies = xreallocarray(b->copies, b->capcopies,
					  sizeof(*b->copies));
	}
	b->copies[b->ncopies++] = (struct socket_copy){
		.pid = t->pid, .has_pid_fd = t->has_pid_fd,
		.pid_fd = t->pid_fd, .proto = s->proto, .family = family,
		.found_fd = t->pid_fd, .fd = t->fd,
	};
	return 0;
}

static int take_sockets(struct batch *b)
{
	struct rlimit rl;
	size_t i;

	/* Each distinct socket stays open until the commit. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (i = 0; i < b->n; i++) {
		struct rule_spec *s = &b->lines[i].spec;
		size_t k;

		error_set_place(b->path, b->lines[i].line);
		for (k = 0; k < s->ntargets; k++) {
			if (s->targets[k].kind == SPEC_TARGET_SOCKET &&
			    take_socket(b, s, &s->targets[k])) {
				error_set_place(NULL, 0);
				return -1;
			}
		}
	}
	error_set_place(NULL, 0);
	return 0;
}

static void report_line(struct batch *b, const struct batch_line *bl,
			const struct nl_status *st)
{
	if (++b->refused > MAX_REPORTED)
		return;
	error_set_place(b->path, bl->line);
	if (bl->spec.cmd == PORTDISPATCH_CMD_FLUSH)
		nl_report(st, "flush the table", true);
	else
		report_rule_error(st, &bl->spec, NULL);
	error_set_place(NULL, 0);
}

static int batch_cb(enum nl_event ev, const struct nlmsghdr *nlh,
		    const struct nl_status *st, void *arg)
{
	struct batch *b = arg;
	uint32_t i;

	(void)nlh;
	if (ev != NL_STATUS || !st)
		return 0;
	i = st->seq - b->first_seq;
	if (b->sent && i < b->sent) {
		if (st->code)
			report_line(b, &b->lines[i], st);
		return 0;
	}
	if (st->seq == b->wait_seq) {
		b->status = *st;
		b->got_status = true;
		return 1;
	}
	return 0;
}

/* Reads what the kernel said so far without waiting for more. */
static void drain(struct nl *nl, struct batch *b)
{
	for (;;) {
		if (nl_recv(nl, MSG_DONTWAIT, batch_cb, b) >= 0)
			continue;
		if (errno == ENOBUFS)
			b->lost = true;
		else if (errno != EINTR)
			return;	/* EAGAIN: nothing more for now */
	}
}

/* Sends a control message (BEGIN, COMMIT, ABORT) and awaits its ack. */
static int control(struct nl *nl, struct batch *b, uint8_t cmd)
{
	char buf[NL_MSG_MAX];
	struct nlmsghdr *nlh = nl_msg_start(nl, buf, cmd, NLM_F_ACK);

	b->wait_seq = nlh->nlmsg_seq;
	b->got_status = false;
	memset(&b->status, 0, sizeof(b->status));
	if (nl_send(nl, buf, nlh->nlmsg_len)) {
		b->status.code = errno;
		return -1;
	}
	while (!b->got_status) {
		if (nl_recv(nl, 0, batch_cb, b) >= 0)
			continue;
		if (errno == ENOBUFS) {
			b->lost = true;
		} else if (errno != EINTR) {
			b->status.code = errno;
			return -1;
		}
	}
	return b->status.code ? -1 : 0;
}

static size_t chunk_size(struct nl *nl)
{
	int sndbuf = 0, rcvbuf = 0;
	socklen_t len = sizeof(int);
	size_t chunk = CHUNK_MAX;

	nl_grow_buffers(nl, SNDBUF_WANTED, RCVBUF_WANTED);
	getsockopt(nl->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
	len = sizeof(int);
	getsockopt(nl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len);
	/*
	 * netlink refuses a sendmsg() larger than the send buffer; and an
	 * error takes far more receive buffer than the command it answers,
	 * so a chunk whose every command fails must still fit.
	 */
	if (sndbuf > 8192 && (size_t)sndbuf - 4096 < chunk)
		chunk = (size_t)sndbuf - 4096;
	if (rcvbuf > 0 && (size_t)rcvbuf / 16 < chunk)
		chunk = (size_t)rcvbuf / 16;
	return chunk < 4 * NL_MSG_MAX ? 4 * NL_MSG_MAX : chunk;
}

static int send_lines(struct nl *nl, struct batch *b)
{
	size_t size = chunk_size(nl), used = 0, i;
	char *chunk = xmalloc(size);
	int ret = 0;

	b->first_seq = nl->seq + 1;
	for (i = 0; i < b->n && !b->refused; i++) {
		const struct batch_line *bl = &b->lines[i];
		struct nlmsghdr *nlh;

		nlh = nl_msg_start(nl, chunk + used, bl->spec.cmd, 0);
		if (bl->spec.cmd != PORTDISPATCH_CMD_FLUSH)
			rule_put_spec(nlh, &bl->spec);
		used += nlh->nlmsg_len;
		if (size - used < NL_MSG_MAX || i + 1 == b->n) {
			if (nl_send(nl, chunk, used)) {
				errorf("could not send the batch: %s",
				       strerror(errno));
				ret = -1;
				break;
			}
			b->sent = i + 1;
			used = 0;
			drain(nl, b);
		}
	}
	free(chunk);
	return ret;
}

static int apply(struct batch *b)
{
	struct nl nl;
	int ret = EXIT_ERROR;

	if (nl_open(&nl))
		return EXIT_ERROR;
	if (control(&nl, b, PORTDISPATCH_CMD_BATCH_BEGIN)) {
		nl_report(&b->status, "open a batch", true);
		goto out;
	}
	if (send_lines(&nl, b) == 0 && !b->refused) {
		if (!control(&nl, b, PORTDISPATCH_CMD_BATCH_COMMIT)) {
			ret = EXIT_OK;
			goto out;
		}
		/* A refused line may only now have been read. */
		if (!b->refused)
			nl_report(&b->status, "commit the batch", true);
	}
	if (b->refused > MAX_REPORTED)
		errorf("%zu more lines were refused",
		       b->refused - MAX_REPORTED);
	if (b->lost)
		warnf("some of the kernel's errors were lost (the receive buffer overflowed)");
	/* Closing the socket would abort too; say it, and wait for it. */
	control(&nl, b, PORTDISPATCH_CMD_BATCH_ABORT);
out:
	nl_close(&nl);
	return ret;
}

int run_batch(const char *path)
{
	struct batch b = { .path = path };
	bool is_stdin = !strcmp(path, "-");
	FILE *f = is_stdin ? stdin : fopen(path, "re");
	int ret;

	if (!f) {
		errorf("could not open %s: %s", path, strerror(errno));
		return EXIT_ERROR;
	}
	ret = read_batch(f, is_stdin ? "standard input" : path, &b);
	if (!is_stdin)
		fclose(f);
	if (ret == EXIT_OK && b.n) {
		if (take_sockets(&b))
			ret = EXIT_ERROR;
		else
			ret = apply(&b);
	}
	batch_free(&b);
	return ret;
}
