// SPDX-License-Identifier: GPL-2.0
/*
 * load: the traffic of portdispatch's benchmarks, over loopback.
 *
 *   load udp-sink  [-6] [-t] -p PORT       count datagrams until SIGTERM
 *   load udp-flood [-6] -a ADDR -p PORT -d SECONDS
 *   load tcp-sink  [-6] [-t] -p PORT       accept and close until SIGTERM
 *   load tcp-conn  [-6] -a ADDR -p PORT -d SECONDS
 *
 * -t makes a sink transparent (IP_TRANSPARENT), which nft's tproxy requires
 * of the sockets it assigns. Sinks print "ready" once bound, and their count when terminated; sources
 * print what they managed. The benchmark divides counts; it never asks for
 * an absolute rate to be anything in particular.
 *
 * For counting instructions (scripts/bench/icount, in a guest where one
 * nanosecond of CLOCK_MONOTONIC is one instruction):
 *
 *   load udp-hold  [-t] -p PORT    bind PORT on 0.0.0.0 and on [::]
 *                                  (IPV6_V6ONLY), never read, until SIGTERM
 *   load tcp-echo  [-t] -p PORT    listen the same way; per connection read
 *                                  one byte, write one, close
 *   load udp-count [-6] -a ADDR -p PORT -n COUNT [-w WARMUP]
 *   load tcp-count [-6] -a ADDR -p PORT -n COUNT [-w WARMUP] [-s SPORT] [-k PORTS]
 *   load udp-flows [-6] -a ADDR -p PORT -n CLIENTS [-s SPORT]
 *   load udp-answer [-6] -a ADDR -p PORT -l LPORT -n COUNT [-w WARMUP]
 *
 * The two sinks print "ready FD4 FD6", their two sockets' descriptors. The
 * counts first do WARMUP operations untimed, then COUNT timed ones, and
 * print the nanoseconds per operation with one decimal: udp-count sends
 * 64-byte datagrams on a connected socket; tcp-count connects, writes a
 * byte, reads the reply and closes with a reset (SO_LINGER 0, so that no
 * TIME_WAIT is left), binding its source ports SPORT to SPORT+PORTS-1 in
 * turn (the kernel's own choice of a port is random, and so would be the
 * work of finding one). Any failed operation is an error: nothing answered
 * on the port, or the rule did not steer.
 *
 * udp-flows sends one datagram from each of CLIENTS sockets, bound to the
 * source ports SPORT up, and prints how many it sent: new flows for a UDP
 * rule to steer (and for the module to remember).
 *
 * udp-answer times what a UDP server sends back to a client. The server is
 * bound to LPORT on 0.0.0.0 or [::] (IPV6_V6ONLY); the client, connected to
 * ADDR port PORT, first sends it one datagram, which a rule must steer
 * from PORT to LPORT, and with PORT equal to LPORT sends nothing. Then the
 * server sends the client 64-byte datagrams with sendto(), and the client
 * reads none until the end, when every one must have reached it, read or
 * dropped for its full buffer (SO_MEMINFO): a connected client takes only
 * what leaves from PORT, so a reply that was not rewritten to leave from
 * there counts as an error, not as a figure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* pd_sockaddr(): the selftests' helpers are plain static inlines. */
#include "../../selftests/pd_test.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int sink(int family, int type, int port, bool transparent)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, family == AF_INET ? "0.0.0.0" : "::",
				    port, &ss);
	int fd = socket(family, type, 0), one = 1;
	unsigned long count = 0;
	char buf[2048];

	if (fd < 0)
		return 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (transparent &&
	    setsockopt(fd, family == AF_INET ? SOL_IP : SOL_IPV6,
		       family == AF_INET ? IP_TRANSPARENT : IPV6_TRANSPARENT,
		       &one, sizeof(one))) {
		perror("load: IP_TRANSPARENT");
		return 1;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) ||
	    (type == SOCK_STREAM && listen(fd, 4096))) {
		perror("load: bind");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		if (type == SOCK_DGRAM) {
			if (recv(fd, buf, sizeof(buf), 0) >= 0)
				count++;
		} else {
			int c = accept(fd, NULL, NULL);

			if (c >= 0) {
				count++;
				close(c);
			}
		}
	}
	printf("%lu\n", count);
	return 0;
}

static int source(int family, int type, const char *addr, int port,
		  double seconds)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, addr, port, &ss);
	unsigned long count = 0, failed = 0;
	double end = now() + seconds;
	char buf[64] = { 0 };
	int fd = -1;

	if (type == SOCK_DGRAM) {
		fd = socket(family, type, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len))
			return 1;
	}
	while (now() < end) {
		for (int i = 0; i < 64; i++) {
			if (type == SOCK_DGRAM) {
				if (send(fd, buf, sizeof(buf), 0) > 0)
					count++;
				continue;
			}
			int c = socket(family, type, 0);

			if (c < 0)
				return 1;
			if (connect(c, (struct sockaddr *)&ss, len) == 0)
				count++;
			else
				failed++;
			close(c);
		}
	}
	printf("%lu %lu\n", count, failed);
	return 0;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sockets on PORT of both families, the IPv6 one IPv6 only. */
static int bind_both(int type, int port, bool transparent, int fds[2])
{
	static const int families[2] = { AF_INET, AF_INET6 };

	for (int i = 0; i < 2; i++) {
		int family = families[i], one = 1;
		struct sockaddr_storage ss;
		socklen_t len = pd_sockaddr(family, i ? "::" : "0.0.0.0", port, &ss);
		int fd = socket(family, type, 0);

		if (fd < 0) {
			perror("load: socket");
			return -1;
		}
		fds[i] = fd;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (family == AF_INET6 &&
		    setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one))) {
			perror("load: IPV6_V6ONLY");
			return -1;
		}
		if (transparent &&
		    setsockopt(fd, i ? SOL_IPV6 : SOL_IP,
			       i ? IPV6_TRANSPARENT : IP_TRANSPARENT,
			       &one, sizeof(one))) {
			perror("load: IP_TRANSPARENT");
			return -1;
		}
		if (bind(fd, (struct sockaddr *)&ss, len) ||
		    (type == SOCK_STREAM && listen(fd, 4096))) {
			perror("load: bind");
			return -1;
		}
	}
	printf("ready %d %d\n", fds[0], fds[1]);
	fflush(stdout);
	return 0;
}

static int udp_hold(int port, bool transparent)
{
	int fds[2] = { -1, -1 };

	if (bind_both(SOCK_DGRAM, port, transparent, fds))
		return 1;
	while (!stop)
		pause();
	close(fds[0]);
	close(fds[1]);
	return 0;
}

static int tcp_echo(int port, bool transparent)
{
	struct pollfd pfd[2] = { { .fd = -1 }, { .fd = -1 } };
	int fds[2] = { -1, -1 };

	if (bind_both(SOCK_STREAM, port, transparent, fds))
		return 1;
	for (int i = 0; i < 2; i++)
		pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	while (!stop) {
		if (poll(pfd, 2, -1) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			char byte;
			int c;

			if (!(pfd[i].revents & POLLIN))
				continue;
			c = accept(fds[i], NULL, NULL);
			if (c < 0)
				continue;
			if (read(c, &byte, 1) == 1 && write(c, &byte, 1) != 1)
				perror("load: tcp-echo write");
			close(c);
		}
	}
	close(fds[0]);
	close(fds[1]);
	return 0;
}

/* Print nanoseconds per operation: under -icount, instructions. */
static int report(long long start, long long end, long count)
{
	printf("%.1f\n", (double)(end - start) / count);
	return 0;
}

static int udp_count(int family, const char *addr, int port, long count,
		     long warmup)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, addr, port, &ss);
	char buf[64] = { 0 };
	long long start = 0;
	long failed = 0;
	int fd = socket(family, SOCK_DGRAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len)) {
		perror("load: udp-count");
		return 1;
	}
	for (long i = -warmup; i < count; i++) {
		if (i == 0)
			start = now_ns();
		if (send(fd, buf, sizeof(buf), 0) != sizeof(buf))
			failed++;
	}
	long long end = now_ns();

	close(fd);
	if (failed) {
		fprintf(stderr, "load: udp-count: %ld of %ld datagrams to %s port %d failed\n",
			failed, warmup + count, addr, port);
		return 1;
	}
	return report(start, end, count);
}

static int tcp_once(int family, const struct sockaddr_storage *dst,
		    socklen_t len, int sport)
{
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	struct sockaddr_storage src;
	socklen_t srclen = pd_sockaddr(family, family == AF_INET ? "0.0.0.0" : "::",
				       sport, &src);
	int c = socket(family, SOCK_STREAM, 0), one = 1, err = 0;
	char byte = 'x';

	if (c < 0)
		return -1;
	setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(c, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	if (bind(c, (struct sockaddr *)&src, srclen) ||
	    connect(c, (const struct sockaddr *)dst, len) ||
	    write(c, &byte, 1) != 1)
		err = errno;
	else
		switch (read(c, &byte, 1)) {
		case 1: break;
		case 0: err = ECONNRESET; break;	/* closed without a reply */
		default: err = errno;
		}
	close(c);
	errno = err;
	return err ? -1 : 0;
}

static int tcp_count(int family, const char *addr, int port, long count,
		     long warmup, int sport, int nports)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, addr, port, &ss);
	long long start = 0;

	if (sport < 1 || nports < 1 || sport + nports - 1 > 65535) {
		fprintf(stderr, "load: tcp-count: source ports %d-%d out of range\n",
			sport, sport + nports - 1);
		return 2;
	}
	for (long i = -warmup; i < count; i++) {
		/* The same ports in the same order, warm-up or not. */
		int p = sport + (int)((i + warmup) % nports);

		if (i == 0)
			start = now_ns();
		if (tcp_once(family, &ss, len, p)) {
			fprintf(stderr, "load: tcp-count: connection %ld from port %d to %s port %d: %s\n",
				i + warmup + 1, p, addr, port, strerror(errno));
			return 1;
		}
	}
	return report(start, now_ns(), count);
}

/* One datagram from each of @clients sockets, bound to ports @sport up. */
static int udp_flows(int family, const char *addr, int port, long clients,
		     int sport)
{
	struct sockaddr_storage dst, src;
	socklen_t len = pd_sockaddr(family, addr, port, &dst), srclen;
	char buf[64] = { 0 };

	if (sport < 1 || sport + clients - 1 > 65535) {
		fprintf(stderr, "load: udp-flows: source ports %d-%ld out of range\n",
			sport, sport + clients - 1);
		return 2;
	}
	for (long i = 0; i < clients; i++) {
		int fd = socket(family, SOCK_DGRAM, 0), one = 1;

		srclen = pd_sockaddr(family, family == AF_INET ? "0.0.0.0" : "::",
				     sport + (int)i, &src);
		if (fd < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		    bind(fd, (struct sockaddr *)&src, srclen) ||
		    connect(fd, (struct sockaddr *)&dst, len) ||
		    send(fd, buf, sizeof(buf), 0) != sizeof(buf)) {
			fprintf(stderr, "load: udp-flows: from port %ld to %s port %d: %s\n",
				sport + i, addr, port, strerror(errno));
			return 1;
		}
		close(fd);
	}
	printf("%ld\n", clients);
	return 0;
}

static bool same_sockaddr(const struct sockaddr_storage *a,
			  const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family || pd_sockaddr_port(a) != pd_sockaddr_port(b))
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		       &((const struct sockaddr_in6 *)b)->sin6_addr,
		       sizeof(struct in6_addr));
}

static int udp_answer(int family, const char *addr, int port, int lport,
		      long count, long warmup)
{
	int srv = pd_server(family, SOCK_DGRAM, family == AF_INET ? "0.0.0.0" : "::",
			    lport, true);
	int cli = pd_connect(family, SOCK_DGRAM, addr, port);
	struct sockaddr_storage client, from;
	socklen_t len = sizeof(client), fromlen;
	__u32 mem[SK_MEMINFO_VARS] = { 0 };
	socklen_t memlen = sizeof(mem);
	long failed = 0, got = 0;
	char buf[64] = { 0 };
	long long start = 0;

	if (srv < 0) {
		fprintf(stderr, "load: udp-answer: a server on port %d: %s\n",
			lport, strerror(errno));
		return 1;
	}
	if (cli < 0 || getsockname(cli, (struct sockaddr *)&client, &len)) {
		fprintf(stderr, "load: udp-answer: a client of %s port %d: %s\n",
			addr, port, strerror(cli < 0 ? -cli : errno));
		return 1;
	}
	if (port != lport) {
		fromlen = sizeof(from);
		if (send(cli, buf, sizeof(buf), 0) != sizeof(buf) ||
		    !pd_readable(srv, pd_ms(2000)) ||
		    recvfrom(srv, buf, sizeof(buf), 0, (struct sockaddr *)&from,
			     &fromlen) != sizeof(buf) ||
		    !same_sockaddr(&from, &client)) {
			fprintf(stderr, "load: udp-answer: the datagram to %s port %d did not reach port %d: no rule steered it\n",
				addr, port, lport);
			return 1;
		}
	}
	for (long i = -warmup; i < count; i++) {
		if (i == 0)
			start = now_ns();
		if (sendto(srv, buf, sizeof(buf), 0, (struct sockaddr *)&client,
			   len) != sizeof(buf))
			failed++;
	}
	long long end = now_ns();

	/* Loopback delivers within sendto(): all of them are there now. */
	for (;;) {
		fromlen = sizeof(from);
		if (recvfrom(cli, buf, sizeof(buf), MSG_DONTWAIT,
			     (struct sockaddr *)&from, &fromlen) < 0)
			break;
		got++;
	}
	if (getsockopt(cli, SOL_SOCKET, SO_MEMINFO, mem, &memlen)) {
		perror("load: udp-answer: SO_MEMINFO");
		return 1;
	}
	close(cli);
	close(srv);
	if (failed || got + mem[SK_MEMINFO_DROPS] != warmup + count) {
		fprintf(stderr, "load: udp-answer: of %ld datagrams from port %d, %ld failed, %ld reached the client connected to port %d (%ld read, %u dropped for its full buffer)\n",
			warmup + count, lport, failed, got + mem[SK_MEMINFO_DROPS], port, got,
			mem[SK_MEMINFO_DROPS]);
		return 1;
	}
	return report(start, end, count);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "", *addr = "127.0.0.1";
	int family = AF_INET, port = 0, lport = 0, sport = 40000, nports = 64, c;
	long count = 100000, warmup = -1;	/* -1: 1,000 datagrams, or PORTS connections */
	bool transparent = false;
	double seconds = 2;

	optind = 2;
	while ((c = getopt(argc, argv, "6ta:p:l:d:n:w:s:k:")) != -1) {
		switch (c) {
		case 't': transparent = true; break;
		case '6': family = AF_INET6; addr = "::1"; break;
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'l': lport = atoi(optarg); break;
		case 'd': seconds = atof(optarg); break;
		case 'n': count = atol(optarg); break;
		case 'w': warmup = atol(optarg); break;
		case 's': sport = atoi(optarg); break;
		case 'k': nports = atoi(optarg); break;
		default: return 2;
		}
	}
	/* No SA_RESTART: a blocked recv() or accept() returns on SIGTERM. */
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (!strcmp(mode, "udp-sink"))
		return sink(family, SOCK_DGRAM, port, transparent);
	if (!strcmp(mode, "tcp-sink"))
		return sink(family, SOCK_STREAM, port, transparent);
	if (!strcmp(mode, "udp-flood"))
		return source(family, SOCK_DGRAM, addr, port, seconds);
	if (!strcmp(mode, "tcp-conn"))
		return source(family, SOCK_STREAM, addr, port, seconds);
	if (count < 1 || warmup < -1) {
		fprintf(stderr, "load: -n must be at least 1, -w at least 0\n");
		return 2;
	}
	if (!strcmp(mode, "udp-hold"))
		return udp_hold(port, transparent);
	if (!strcmp(mode, "tcp-echo"))
		return tcp_echo(port, transparent);
	if (!strcmp(mode, "udp-count"))
		return udp_count(family, addr, port, count, warmup < 0 ? 1000 : warmup);
	if (!strcmp(mode, "tcp-count"))
		return tcp_count(family, addr, port, count, warmup < 0 ? nports : warmup,
				 sport, nports);
	if (!strcmp(mode, "udp-flows"))
		return udp_flows(family, addr, port, count, sport);
	if (!strcmp(mode, "udp-answer"))
		return udp_answer(family, addr, port, lport, count,
				  warmup < 0 ? 1000 : warmup);
	fprintf(stderr, "usage: load udp-sink|tcp-sink|udp-flood|tcp-conn [-6] [-t] [-a ADDR] -p PORT [-d SECONDS]\n"
			"       load udp-hold|tcp-echo [-t] -p PORT\n"
			"       load udp-count|tcp-count [-6] [-a ADDR] -p PORT [-n COUNT] [-w WARMUP] [-s SPORT] [-k PORTS]\n"
			"       load udp-flows [-6] [-a ADDR] -p PORT -n CLIENTS [-s SPORT]\n"
			"       load udp-answer [-6] [-a ADDR] -p PORT -l LPORT [-n COUNT] [-w WARMUP]\n");
	return 2;
}
