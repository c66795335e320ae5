// SPDX-License-Identifier: GPL-2.0
#include "target.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/* Listed in errors, so the user can pick one with "fd". */
struct found_socket {
	uint32_t fd;		/* its number in the process */
	int copy;		/* our copy while it is a candidate, else -1 */
	int protocol;
	bool candidate;
	char addr[INET6_ADDRSTRLEN + 8];	/* "0.0.0.0:53", "[::]:80" */
	const char *state;	/* "listening", "bound", "connected", ... */
};

/* A growing sentence for the error messages. */
struct text {
	char buf[1024];
	size_t len;
};

static void text_add(struct text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= sizeof(t->buf) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
	if (t->len >= sizeof(t->buf))
		t->len = sizeof(t->buf) - 1;
}

/* glibc 2.36 has wrappers, older ones do not: call the kernel directly. */
static int sys_pidfd_open(uint32_t pid)
{
	return (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
}

static int sys_pidfd_getfd(int pidfd, uint32_t fd)
{
	return (int)syscall(SYS_pidfd_getfd, pidfd, (int)fd, 0);
}

static int open_process(uint32_t pid)
{
	int pidfd;

	/* pid_t is signed: what does not fit names no process. */
	if (pid == 0 || pid > INT_MAX) {
		errorf("no process with pid %u", pid);
		return -1;
	}
	pidfd = sys_pidfd_open(pid);
	if (pidfd >= 0)
		return pidfd;
	switch (errno) {
	case ESRCH:
		errorf("no process with pid %u", pid);
		break;
	case EINVAL:
		errorf("%u is not the pid of a process (is it a thread's id?)",
		       pid);
		break;
	case ENOSYS:
		errorf("this kernel has no pidfd_open(2), which naming another process's socket needs (Linux 5.6 or later)");
		break;
	default:
		errorf("could not open process %u: %s", pid, strerror(errno));
	}
	return -1;
}

static void take_error(uint32_t pid, uint32_t fd, int err)
{
	switch (err) {
	case EBADF:
		errorf("process %u has no fd %u", pid, fd);
		break;
	case EPERM:
	case EACCES:
		errorf("not allowed to take fd %u of process %u (pidfd_getfd needs ptrace rights over it)",
		       fd, pid);
		break;
	case ESRCH:
		errorf("process %u has exited", pid);
		break;
	case ENOSYS:
		errorf("this kernel has no pidfd_getfd(2), which naming another process's socket needs (Linux 5.6 or later)");
		break;
	default:
		errorf("could not take fd %u of process %u: %s", fd, pid,
		       strerror(err));
	}
}

static int take_fd(int pidfd, uint32_t pid, uint32_t fd)
{
	int copy = fd > INT_MAX ? -1 : sys_pidfd_getfd(pidfd, fd);

	if (copy < 0)
		take_error(pid, fd, fd > INT_MAX ? EBADF : errno);
	return copy;
}

static int int_opt(int fd, int level, int name)
{
	int v = 0;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, name, &v, &len))
		return -1;
	return v;
}

static bool can_take_family(int domain, bool v6only, uint8_t family)
{
	if (family == AF_INET6)
		return domain == AF_INET6;
	if (family == AF_INET)
		return domain == AF_INET || !v6only;
	return true;
}

/*
 * Looks at one of the process's sockets through our copy. Returns false
 * for sockets that are not TCP or UDP over IP.
 */
static bool inspect(int copy, const struct rule_spec *spec,
		    struct found_socket *s)
{
	struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
	socklen_t len = sizeof(ss);
	int domain = int_opt(copy, SOL_SOCKET, SO_DOMAIN);
	bool v6only = false, bound = false, connected;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;

	if (domain != AF_INET && domain != AF_INET6)
		return false;
	s->protocol = int_opt(copy, SOL_SOCKET, SO_PROTOCOL);
	if (s->protocol != IPPROTO_TCP && s->protocol != IPPROTO_UDP)
		return false;
	if (domain == AF_INET6)
		v6only = int_opt(copy, IPPROTO_IPV6, IPV6_V6ONLY) == 1;
	if (!getsockname(copy, (struct sockaddr *)&ss, &len)) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *in = (void *)&ss;

			inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
			port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (void *)&ss;

			inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
			port = ntohs(in6->sin6_port);
		}
		bound = port != 0;
	}
	snprintf(s->addr, sizeof(s->addr), domain == AF_INET6 ? "[%s]:%u" :
		 "%s:%u", host, port);

	len = sizeof(ss);
	connected = !getpeername(copy, (struct sockaddr *)&ss, &len);
	if (s->protocol == IPPROTO_TCP &&
	    int_opt(copy, SOL_SOCKET, SO_ACCEPTCONN) == 1)
		s->state = "listening";
	else if (connected)
		s->state = "connected";
	else if (bound)
		s->state = "bound";
	else
		s->state = "unbound";

	s->candidate = s->protocol == spec->proto &&
		       !strcmp(s->state, spec->proto == IPPROTO_TCP ?
				"listening" : "bound") &&
		       can_take_family(domain, v6only, spec_family(spec));
	return true;
}

static int cmp_fd(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The fd numbers of the process's sockets, in order; -1 having said why. */
static int list_socket_fds(uint32_t pid, uint32_t **fds, size_t *n)
{
	char path[64], link[64];
	struct dirent *de;
	size_t cap = 0;
	DIR *dir;

	*fds = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "/proc/%u/fd", pid);
	dir = opendir(path);
	if (!dir) {
		if (errno == ENOENT)
			errorf("no process with pid %u", pid);
		else if (errno == EACCES || errno == EPERM)
			errorf("not allowed to list the fds of process %u (it needs ptrace rights over it)",
			       pid);
		else
			errorf("could not list the fds of process %u: %s", pid,
			       strerror(errno));
		return -1;
	}
	while ((de = readdir(dir))) {
		uint32_t fd;
		ssize_t len;

		if (parse_u32(de->d_name, &fd))
			continue;	/* "." and ".." */
		len = readlinkat(dirfd(dir), de->d_name, link, sizeof(link) - 1);
		if (len < 0)
			continue;	/* closed meanwhile */
		link[len] = '\0';
		if (strncmp(link, "socket:[", 8))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*fds = xreallocarray(*fds, cap, sizeof(**fds));
		}
		(*fds)[(*n)++] = fd;
	}
	closedir(dir);
	if (*n)
		qsort(*fds, *n, sizeof(**fds), cmp_fd);
	return 0;
}

static const char *wanted(const struct rule_spec *spec, bool plural)
{
	if (spec->proto == IPPROTO_TCP)
		return plural ? "listening TCP sockets" : "listening TCP socket";
	return plural ? "bound UDP sockets" : "bound, unconnected UDP socket";
}

static const char *for_family(const struct rule_spec *spec)
{
	switch (spec_family(spec)) {
	case AF_INET:
		return " for IPv4";
	case AF_INET6:
		return " for IPv6";
	}
	return "";
}

static void say_not_one(const struct rule_spec *spec, uint32_t pid,
			const struct found_socket *found, size_t n,
			size_t candidates)
{
	struct text t = { .len = 0 };
	size_t i, shown = 0;

	if (candidates > 1) {
		text_add(&t, "process %u has %zu %s%s: ", pid, candidates,
			 wanted(spec, true), for_family(spec));
		for (i = 0; i < n; i++) {
			if (!found[i].candidate)
				continue;
			text_add(&t, "%sfd %u (%s)", shown++ ? ", " : "",
				 found[i].fd, found[i].addr);
		}
		text_add(&t, "; name one with \"fd\"");
		errorf("%s", t.buf);
		return;
	}
	text_add(&t, "process %u has no %s%s", pid, wanted(spec, false),
		 for_family(spec));
	for (i = 0; i < n; i++) {
		if (shown == 8) {
			text_add(&t, ", ...");
			break;
		}
		text_add(&t, "%sfd %u %s %s %s", shown++ ? ", " : " (its sockets: ",
			 found[i].fd,
			 found[i].protocol == IPPROTO_TCP ? "TCP" : "UDP",
			 found[i].addr, found[i].state);
	}
	text_add(&t, shown ? ")" : " (it has no TCP or UDP sockets)");
	errorf("%s", t.buf);
}

/* Finds the one socket of target t that fits; returns our copy or -1. */
static int find_socket(int pidfd, const struct rule_spec *spec,
		       struct target_spec *t)
{
	struct found_socket *found;
	size_t n = 0, i, candidates = 0;
	uint32_t *fds;
	size_t nfds;
	int chosen = -1;

	if (list_socket_fds(t->pid, &fds, &nfds))
		return -1;
	found = xcalloc(nfds, sizeof(*found));
	for (i = 0; i < nfds; i++) {
		struct found_socket *s = &found[n];

		s->fd = fds[i];
		s->copy = sys_pidfd_getfd(pidfd, fds[i]);
		if (s->copy < 0) {
			if (errno == EBADF)
				continue;	/* closed since we looked */
			take_error(t->pid, fds[i], errno);
			goto out;
		}
		if (!inspect(s->copy, spec, s)) {
			close(s->copy);
			continue;
		}
		if (!s->candidate) {
			close(s->copy);
			s->copy = -1;
		} else {
			candidates++;
		}
		n++;
	}
	if (candidates != 1) {
		say_not_one(spec, t->pid, found, n, candidates);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (found[i].candidate) {
			chosen = found[i].copy;
			found[i].copy = -1;
			t->pid_fd = found[i].fd;
		}
	}
out:
	for (i = 0; i < n; i++)
		if (found[i].copy >= 0)
			close(found[i].copy);
	free(found);
	free(fds);
	return chosen;
}

int target_take(const struct rule_spec *spec, struct target_spec *t)
{
	int pidfd = open_process(t->pid);
	int copy;

	if (pidfd < 0)
		return -1;
	if (t->has_pid_fd)
		copy = take_fd(pidfd, t->pid, t->pid_fd);
	else
		copy = find_socket(pidfd, spec, t);
	close(pidfd);
	return copy;
}
