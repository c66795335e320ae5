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
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "", *addr = "127.0.0.1";
	int family = AF_INET, port = 0, c;
	bool transparent = false;
	double seconds = 2;

	optind = 2;
	while ((c = getopt(argc, argv, "6ta:p:d:")) != -1) {
		switch (c) {
		case 't': transparent = true; break;
		case '6': family = AF_INET6; addr = "::1"; break;
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'd': seconds = atof(optarg); break;
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
	fprintf(stderr, "usage: load udp-sink|tcp-sink|udp-flood|tcp-conn [-6] [-a ADDR] -p PORT [-d SECONDS]\n");
	return 2;
}
