// SPDX-License-Identifier: GPL-2.0
/*
 * pdsock: the socket end of portdispatch's shell selftests.
 *
 *   pdsock serve [-6] [-u] [-V] [-b ADDR] -p PORT [-n COUNT] [-r]
 *	Listen (TCP) or bind (UDP), print "ready pid=PID fd=FD port=PORT",
 *	then one line per connection or datagram, with the local address the
 *	client reached:
 *	  "accept local=ADDR:PORT peer=ADDR:PORT"
 *	  "recv local=ADDR:PORT peer=ADDR:PORT len=N"   (IP(V6)_RECVORIGDSTADDR)
 *	-V sets IPV6_V6ONLY, -r SO_REUSEPORT, -k keeps connections open (the
 *	server reads and drops what they send). Exits after COUNT (default:
 *	never).
 *   pdsock connect [-6] [-u] -a ADDR -p PORT [-s SIZE] [-n COUNT] [-w MS]
 *	TCP: connect, print "connected local=... peer=...", exit 0; a refused
 *	connection prints "refused" and exits 3, a timeout exits 4.
 *	UDP: send COUNT datagrams (default 1) of SIZE bytes (default 16) from
 *	one connected socket, so all on one 4-tuple, and wait for a reply or
 *	an error: "replied", "refused" (ICMP unreachable, exit 3), or "sent"
 *	when nothing came back (exit 0).
 *
 * Lines are flushed as they are written: the tests read them from pipes.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

struct opts {
	int family;
	int type;
	const char *addr;
	int port;
	long count;
	size_t size;
	int wait_ms;
	bool v6only;
	bool reuseport;
	bool keep;
};

static void die(const char *what)
{
	fprintf(stderr, "pdsock: %s: %s\n", what, strerror(errno));
	exit(1);
}

static const char *fmt(const struct sockaddr_storage *ss, char *buf,
		       size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	}
	return buf;
}

static socklen_t make_addr(const struct opts *o, const char *addr,
			   struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (o->family == AF_INET) {
		struct sockaddr_in *sin = (void *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(o->port);
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			die("bad IPv4 address");
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (void *)ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(o->port);
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
		die("bad IPv6 address");
	return sizeof(*sin6);
}

static void serve_udp(int fd, long count)
{
	int on = 1;

	if (setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &on, sizeof(on)) &&
	    errno != ENOPROTOOPT)
		die("IP_RECVORIGDSTADDR");
	setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &on, sizeof(on));

	for (long n = 0; count < 0 || n < count; n++) {
		char data[65536], control[256], a[64], b[64];
		struct sockaddr_storage peer, local = { 0 };
		struct iovec iov = { data, sizeof(data) };
		struct msghdr msg = {
			.msg_name = &peer, .msg_namelen = sizeof(peer),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = control, .msg_controllen = sizeof(control),
		};
		struct cmsghdr *cm;
		ssize_t len = recvmsg(fd, &msg, 0);

		if (len < 0)
			die("recvmsg");
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if ((cm->cmsg_level == SOL_IP &&
			     cm->cmsg_type == IP_ORIGDSTADDR) ||
			    (cm->cmsg_level == SOL_IPV6 &&
			     cm->cmsg_type == IPV6_ORIGDSTADDR))
				memcpy(&local, CMSG_DATA(cm),
				       cm->cmsg_len - CMSG_LEN(0));
		}
		printf("recv local=%s peer=%s len=%zd\n",
		       local.ss_family ? fmt(&local, a, sizeof(a)) : "?",
		       fmt(&peer, b, sizeof(b)), len);
		fflush(stdout);
		sendto(fd, "ok", 2, 0, (void *)&peer, msg.msg_namelen);
	}
}

static void serve_tcp(int fd, long count, bool keep)
{
	for (long n = 0; count < 0 || n < count; n++) {
		struct sockaddr_storage local, peer;
		socklen_t len = sizeof(peer);
		char a[64], b[64], data[4096];
		int c = accept(fd, (void *)&peer, &len);

		if (c < 0)
			die("accept");
		len = sizeof(local);
		getsockname(c, (void *)&local, &len);
		printf("accept local=%s peer=%s\n", fmt(&local, a, sizeof(a)),
		       fmt(&peer, b, sizeof(b)));
		fflush(stdout);
		if (write(c, "hello\n", 6) < 0)
			die("write");
		/* A kept connection gets a reader that dies with the server. */
		if (keep && fork() == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(fd);
			while (read(c, data, sizeof(data)) > 0)
				;
			_exit(0);
		}
		close(c);
	}
}

static int serve(const struct opts *o)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, on = 1;

	fd = socket(o->family, o->type, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (o->reuseport &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)))
		die("SO_REUSEPORT");
	if (o->family == AF_INET6 &&
	    setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &(int){ o->v6only },
		       sizeof(int)))
		die("IPV6_V6ONLY");
	len = make_addr(o, o->addr ? o->addr :
			(o->family == AF_INET ? "0.0.0.0" : "::"), &ss);
	if (bind(fd, (void *)&ss, len))
		die("bind");
	if (o->type == SOCK_STREAM && listen(fd, 128))
		die("listen");
	len = sizeof(ss);
	getsockname(fd, (void *)&ss, &len);
	printf("ready pid=%d fd=%d port=%u\n", getpid(), fd,
	       ntohs(((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);

	if (o->keep)
		signal(SIGCHLD, SIG_IGN);
	if (o->type == SOCK_DGRAM)
		serve_udp(fd, o->count);
	else
		serve_tcp(fd, o->count, o->keep);
	return 0;
}

static int wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms);
}

static int connect_to(const struct opts *o)
{
	struct sockaddr_storage ss, local;
	char buf[65536] = { 0 }, a[64], b[64];
	socklen_t len;
	int fd;

	if (!o->addr)
		die("connect needs -a ADDR");
	fd = socket(o->family, o->type, 0);
	if (fd < 0)
		die("socket");
	len = make_addr(o, o->addr, &ss);
	if (connect(fd, (void *)&ss, len)) {
		if (errno == ECONNREFUSED) {
			puts("refused");
			return 3;
		}
		if (errno == ETIMEDOUT) {
			puts("timeout");
			return 4;
		}
		die("connect");
	}

	if (o->type == SOCK_STREAM) {
		len = sizeof(local);
		getsockname(fd, (void *)&local, &len);
		printf("connected local=%s peer=%s\n",
		       fmt(&local, a, sizeof(a)), fmt(&ss, b, sizeof(b)));
		/* A reset after the handshake is a refusal too. */
		if (wait_readable(fd, o->wait_ms) > 0 &&
		    read(fd, buf, sizeof(buf)) < 0 && errno == ECONNRESET) {
			puts("reset");
			return 3;
		}
		return 0;
	}

	for (long n = 0; n < (o->count > 0 ? o->count : 1); n++)
		if (send(fd, buf, o->size, 0) < 0)
			die("send");
	if (wait_readable(fd, o->wait_ms) <= 0) {
		puts("sent");
		return 0;
	}
	if (recv(fd, buf, sizeof(buf), 0) < 0) {
		if (errno == ECONNREFUSED) {
			puts("refused");
			return 3;
		}
		die("recv");
	}
	puts("replied");
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.family = AF_INET, .type = SOCK_STREAM, .count = -1,
		.size = 16, .wait_ms = 1000,
	};
	const char *mode = argc > 1 ? argv[1] : "";
	int c;

	optind = 2;
	while ((c = getopt(argc, argv, "6uVrka:b:p:n:s:w:")) != -1) {
		switch (c) {
		case 'k': o.keep = true; break;
		case '6': o.family = AF_INET6; break;
		case 'u': o.type = SOCK_DGRAM; break;
		case 'V': o.v6only = true; break;
		case 'r': o.reuseport = true; break;
		case 'a': case 'b': o.addr = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'n': o.count = atol(optarg); break;
		case 's': o.size = strtoul(optarg, NULL, 0); break;
		case 'w': o.wait_ms = atoi(optarg); break;
		default: return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "serve"))
		return serve(&o);
	if (!strcmp(mode, "connect"))
		return connect_to(&o);
	fprintf(stderr, "usage: pdsock serve|connect [options]\n");
	return 2;
}
