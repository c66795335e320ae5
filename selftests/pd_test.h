/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared pieces of portdispatch's C selftests (kselftest_harness.h):
 * a private network namespace per test, running portctl, and sockets.
 * Everything here is static: each test program includes it once.
 */
#ifndef _PD_TEST_H
#define _PD_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * A fresh network namespace with loopback up: its own table, its own
 * ports, and nothing left behind when the test process exits.
 */
static inline int pd_enter_netns(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd, err;

	if (unshare(CLONE_NEWNET))
		return -errno;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return -errno;
	err = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (!err) {
		ifr.ifr_flags |= IFF_UP;
		err = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return err ? -errno : 0;
}

/*
 * Enters the network namespace @ns (an fd): stranded elsewhere, a test has
 * nothing sound left to do.
 */
static inline void pd_go(int ns)
{
	if (setns(ns, CLONE_NEWNET)) {
		perror("setns");
		abort();
	}
}

/* What went wrong building a test's namespaces; "" when nothing did. */
static char pd_setup_error[256];

/* Says that @what failed with @err (an errno, of either sign): -1. */
static inline int pd_setup_fail(const char *what, int err)
{
	snprintf(pd_setup_error, sizeof(pd_setup_error), "%s: %s", what,
		 strerror(err < 0 ? -err : err));
	return -1;
}

/* A new network namespace, entered: its file descriptor, or -1. */
static inline int pd_new_ns(void)
{
	int err = pd_enter_netns();

	if (err)
		return pd_setup_fail("a network namespace", err);
	return open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
}

/*
 * Run "portctl ARGS" (a printf format, split on spaces) and return its
 * exit status; its stdout and stderr together land in @out when given.
 */
static inline int pd_portctl(char *out, size_t outlen, const char *fmt, ...)
{
	char cmd[1024], args[900];
	va_list ap;
	FILE *p;
	size_t n = 0;
	int status;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	/*
	 * The shell expands the path from the environment, quoted: a
	 * checkout's path may hold spaces.
	 */
	setenv("PORTCTL", "../build/portctl", 0);
	snprintf(cmd, sizeof(cmd), "\"$PORTCTL\" %s 2>&1", args);

	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out && outlen) {
		n = fread(out, 1, outlen - 1, p);
		out[n] = '\0';
	} else {
		char sink[256];

		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static inline socklen_t pd_sockaddr(int family, const char *addr, int port,
				    struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		inet_pton(AF_INET, addr, &sin->sin_addr);
		return sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &sin6->sin6_addr);
		return sizeof(*sin6);
	}
}

static inline int pd_sockaddr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/*
 * A bound socket: listening for TCP. @v6only applies to AF_INET6 only;
 * @dev, when given, is the device it is bound to (SO_BINDTODEVICE),
 * before it binds: sockets on one port bound to different devices do
 * not conflict.
 */
static inline int pd_server_dev(int family, int type, const char *addr,
				int port, bool v6only, const char *dev)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, addr, port, &ss);
	int fd, one = 1;

	fd = socket(family, type, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6)
		setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &(int){ v6only },
			   sizeof(int));
	if ((dev && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev,
			       strlen(dev) + 1)) ||
	    bind(fd, (struct sockaddr *)&ss, len) ||
	    (type == SOCK_STREAM && listen(fd, 128))) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The one factor of every time bound in the tests, as lib.sh has it:
 * bounds are written for Debian's kernels, and selftests/run exports
 * PD_TIME_SCALE (3 on the debug kernel, which runs about three times
 * slower). Without it, KSFT_MACHINE_SLOW=yes means 3 too.
 */
static inline int pd_time_scale(void)
{
	static int scale;

	if (!scale) {
		const char *s = getenv("PD_TIME_SCALE");
		const char *slow = getenv("KSFT_MACHINE_SLOW");

		scale = s ? atoi(s) : 0;
		if (scale < 1)
			scale = slow && !strcmp(slow, "yes") ? 3 : 1;
	}
	return scale;
}

/* A time bound of @ms on Debian's kernels, here. */
static inline int pd_ms(int ms)
{
	return ms * pd_time_scale();
}

static inline int pd_server(int family, int type, const char *addr, int port,
			    bool v6only)
{
	return pd_server_dev(family, type, addr, port, v6only, NULL);
}

/* Connect, with a timeout so that a silent drop cannot hang a test. */
static inline int pd_connect(int family, int type, const char *addr, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, addr, port, &ss);
	struct timeval tv = { .tv_sec = pd_ms(2000) / 1000 };
	int fd = socket(family, type, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static inline long pd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * bind(), again while the address is in use for up to @ms: the last
 * socket on a fixed port may still be closing. 0 or -errno.
 */
static inline int pd_bind_retry(int fd, const struct sockaddr_storage *ss,
				socklen_t len, int ms)
{
	long end = pd_now_ms() + ms;

	while (bind(fd, (const struct sockaddr *)ss, len)) {
		if (errno != EADDRINUSE || pd_now_ms() > end)
			return -errno;
		usleep(20000);
	}
	return 0;
}

/* Is a connection or datagram waiting on @fd within @ms? */
static inline bool pd_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

/* "127.0.0.1:80", "[::1]:80", "[::ffff:127.0.0.1]:80". */
static inline const char *pd_fmt_ss(const struct sockaddr_storage *ss,
				    char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
			  host, sizeof(host));
		snprintf(buf, len, "%s:%d", host, pd_sockaddr_port(ss));
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)ss)->sin6_addr, host,
			  sizeof(host));
		snprintf(buf, len, "[%s]:%d", host, pd_sockaddr_port(ss));
	} else {
		snprintf(buf, len, "(family %d)", ss->ss_family);
	}
	return buf;
}

/*
 * A counter of the namespace's network stack: @name in @file, which is
 * either "Name value" lines (/proc/net/snmp6) or, when @table is given,
 * pairs of "Table: names..." and "Table: values..." lines (/proc/net/snmp,
 * /proc/net/netstat). -1 when it is not there.
 */
static inline long pd_proc_counter(const char *file, const char *table,
				   const char *name)
{
	char names[4096] = "", line[4096], *ns, *vs, *n, *v;
	size_t tlen = table ? strlen(table) : 0;
	long value = -1;
	FILE *f = fopen(file, "r");

	if (!f)
		return -1;
	while (value < 0 && fgets(line, sizeof(line), f)) {
		if (!table) {
			n = strtok_r(line, "\n ", &vs);
			v = strtok_r(NULL, "\n ", &vs);
			if (n && v && !strcmp(n, name))
				value = strtol(v, NULL, 10);
			continue;
		}
		if (strncmp(line, table, tlen) || line[tlen] != ':')
			continue;
		if (!names[0]) {
			memcpy(names, line, sizeof(names));
			continue;
		}
		n = strtok_r(names, "\n ", &ns);
		v = strtok_r(line, "\n ", &vs);
		for (; n && v; n = strtok_r(NULL, "\n ", &ns),
		     v = strtok_r(NULL, "\n ", &vs)) {
			if (!strcmp(n, name)) {
				value = strtol(v, NULL, 10);
				break;
			}
		}
		break;
	}
	fclose(f);
	return value;
}

/*
 * Write @value to a file (a module parameter, a sysctl, a cgroup's
 * control file): 0 or -errno.
 */
static inline int pd_write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) != (ssize_t)strlen(value))
		err = -errno;
	close(fd);
	return err;
}

/* A file's first line, without its newline: 0 or -errno. */
static inline int pd_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

#endif /* _PD_TEST_H */
