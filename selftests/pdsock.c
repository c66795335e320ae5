// SPDX-License-Identifier: GPL-2.0
/*
 * pdsock: the socket end of portdispatch's shell selftests.
 *
 *   pdsock serve [-6] [-u] [-V] [-b ADDR] -p PORT [-n COUNT] [-r] [-k] [-q]
 *	Listen (TCP) or bind (UDP), print "ready pid=PID fd=FD port=PORT",
 *	then one line per connection or datagram, with the local address the
 *	client reached:
 *	  "accept local=ADDR:PORT peer=ADDR:PORT"
 *	  "recv local=ADDR:PORT peer=ADDR:PORT len=N"   (IP(V6)_RECVORIGDSTADDR)
 *	-V sets IPV6_V6ONLY, -r SO_REUSEPORT, -k keeps connections open (the
 *	server reads and drops what they send). Exits after COUNT (default:
 *	never). -q listens and never accepts (nor reads): connections wait in
 *	its queues until it dies.
 *   pdsock connect [-6] [-u] -a ADDR -p PORT [-s SIZE] [-n COUNT] [-w MS]
 *	TCP: connect, print "connected local=... peer=...", exit 0; a refused
 *	connection prints "refused" and exits 3, a timeout exits 4.
 *	UDP: send COUNT datagrams (default 1) of SIZE bytes (default 16) from
 *	one connected socket, so all on one 4-tuple, and wait for a reply or
 *	an error: "replied", "refused" (ICMP unreachable, exit 3), or "sent"
 *	when nothing came back (exit 0).
 *   pdsock flood [-6] [-u] -a ADDR -p PORT [-p PORT...] -S SRC [-R RATE]
 *	     [-c CONNS]
 *	New flows from raw sockets until killed: TCP SYNs, or UDP datagrams
 *	of SIZE bytes, from address SRC (anyone's: an address nobody answers
 *	for leaves SYN-RECV requests behind) and a new random source port
 *	each, RATE a second (default 1000) over the PORTs in turn. For TCP,
 *	CONNS real connections to each PORT are opened first ("held N"), and
 *	each gets a byte with every new flow's packets (what comes back is
 *	never read). Prints "flooding" after the first packets, then "sent N
 *	errors N" every second; errors (the route gone, a held connection
 *	reset) are counted, not fatal.
 *
 * Lines are flushed as they are written: the tests read them from pipes.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS	8

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
	bool no_accept;
	int ports[MAX_PORTS];	/* flood: every -p */
	int nports;
	const char *src;	/* flood: -S */
	long rate;		/* flood: -R */
	int conns;		/* flood: -c */
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

	if (o->no_accept)
		for (;;)
			pause();
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

/* ---- flood ------------------------------------------------------------ */

static uint32_t rnd(void)
{
	static uint32_t x;

	if (!x)
		x = getpid() * 2654435761u | 1;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint16_t *w = data;

	for (; len > 1; len -= 2)
		sum += *w++;
	if (len)
		sum += *(const uint8_t *)w;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/*
 * One new flow's first packet, IP header included, in @pkt: its length.
 * @src and @dst are the addresses in network order (4 or 16 bytes).
 */
static size_t flood_packet(const struct opts *o, const void *src,
			   const void *dst, int dport, uint8_t *pkt)
{
	size_t iplen = o->family == AF_INET ? sizeof(struct iphdr) :
					      sizeof(struct ip6_hdr);
	size_t alen = o->family == AF_INET ? 4 : 16;
	int proto = o->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
	size_t l4len = proto == IPPROTO_TCP ? sizeof(struct tcphdr) :
		       sizeof(struct udphdr) + o->size;
	uint8_t *l4 = pkt + iplen;
	uint16_t sport = 1024 + rnd() % (65536 - 1024), *csum;
	uint32_t sum;

	memset(pkt, 0, iplen + l4len);
	if (o->family == AF_INET) {
		struct iphdr *ip = (void *)pkt;

		ip->version = 4;
		ip->ihl = 5;
		ip->ttl = 64;
		ip->protocol = proto;
		ip->tot_len = htons(iplen + l4len);
		memcpy(&ip->saddr, src, 4);
		memcpy(&ip->daddr, dst, 4);
	} else {
		struct ip6_hdr *ip6 = (void *)pkt;

		ip6->ip6_flow = htonl(6u << 28);
		ip6->ip6_plen = htons(l4len);
		ip6->ip6_nxt = proto;
		ip6->ip6_hlim = 64;
		memcpy(&ip6->ip6_src, src, 16);
		memcpy(&ip6->ip6_dst, dst, 16);
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = (void *)l4;

		th->source = htons(sport);
		th->dest = htons(dport);
		th->seq = htonl(rnd());
		th->doff = sizeof(*th) / 4;
		th->syn = 1;
		th->window = htons(64240);
		csum = &th->check;
	} else {
		struct udphdr *uh = (void *)l4;

		uh->source = htons(sport);
		uh->dest = htons(dport);
		uh->len = htons(l4len);
		csum = &uh->check;
	}
	/* The pseudo-header: addresses, protocol, length. */
	sum = csum_add(0, src, alen);
	sum = csum_add(sum, dst, alen);
	sum += htons(proto) + htons(l4len);
	sum = csum_add(sum, l4, l4len);
	*csum = csum_fold(sum);
	if (!*csum && proto == IPPROTO_UDP)
		*csum = 0xffff;
	return iplen + l4len;
}

/* CONNS connections to each port, held open and never read; in @fds. */
static int flood_hold(const struct opts *o, int *fds)
{
	struct opts c = *o;
	int i, p, held = 0;

	for (p = 0; p < o->nports; p++) {
		c.port = o->ports[p];
		for (i = 0; i < o->conns; i++) {
			struct sockaddr_storage ss;
			socklen_t len = make_addr(&c, o->addr, &ss);
			int fd = socket(o->family, SOCK_STREAM, 0);

			if (fd < 0)
				die("socket");
			if (connect(fd, (void *)&ss, len))
				die("connect");
			fds[held++] = fd;
		}
	}
	printf("held %d\n", held);
	return held;
}

/* Runs until killed. */
static void __attribute__((noreturn)) flood(const struct opts *o)
{
	struct sockaddr_storage dst, src;
	uint8_t pkt[1500], *s, *d;
	long sent = 0, errors = 0, tick = 0, burst, interval = 10000000L;
	int fd, p = 0, held = 0, *fds = NULL;
	struct timespec next;

	if (!o->addr || !o->src || !o->nports)
		die("flood needs -a ADDR, -S SRC and -p PORT");
	if (o->size > 1024)
		die("flood: SIZE is at most 1024");
	make_addr(o, o->addr, &dst);
	make_addr(o, o->src, &src);
	if (o->family == AF_INET) {
		s = (void *)&((struct sockaddr_in *)&src)->sin_addr;
		d = (void *)&((struct sockaddr_in *)&dst)->sin_addr;
		((struct sockaddr_in *)&dst)->sin_port = 0;
	} else {
		s = (void *)&((struct sockaddr_in6 *)&src)->sin6_addr;
		d = (void *)&((struct sockaddr_in6 *)&dst)->sin6_addr;
		((struct sockaddr_in6 *)&dst)->sin6_port = 0;
	}
	if (o->type == SOCK_STREAM && o->conns > 0) {
		fds = calloc(o->conns * o->nports, sizeof(*fds));
		if (!fds)
			die("calloc");
		held = flood_hold(o, fds);
	}

	/* IPPROTO_RAW: we write the IP header, spoofed source included. */
	fd = socket(o->family, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0)
		die("raw socket");
	/* Bursts every 10 ms, or single packets further apart. */
	if (o->rate <= 0)
		die("flood: RATE must be positive");
	burst = o->rate / 100;
	if (burst < 1) {
		burst = 1;
		interval = 1000000000L / o->rate;
	}
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		for (long i = 0; i < burst; i++) {
			size_t len = flood_packet(o, s, d, o->ports[p], pkt);

			p = (p + 1) % o->nports;
			if (sendto(fd, pkt, len, 0, (void *)&dst,
				   o->family == AF_INET ?
				   sizeof(struct sockaddr_in) :
				   sizeof(struct sockaddr_in6)) < 0)
				errors++;
			else
				sent++;
		}
		for (int i = 0; i < held; i++)
			if (send(fds[i], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
				errors++;
		if (!tick)
			puts("flooding");
		if (++tick % (1000000000L / interval) == 0)
			printf("sent %ld errors %ld\n", sent, errors);
		next.tv_nsec += interval;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next,
				       NULL) == EINTR)
			;
	}
}

int main(int argc, char **argv)
{
	struct opts o = {
		.family = AF_INET, .type = SOCK_STREAM, .count = -1,
		.size = 16, .wait_ms = 1000, .rate = 1000,
	};
	const char *mode = argc > 1 ? argv[1] : "";
	int c;

	optind = 2;
	while ((c = getopt(argc, argv, "6uVrkqa:b:p:n:s:w:S:R:c:")) != -1) {
		switch (c) {
		case 'k': o.keep = true; break;
		case 'q': o.no_accept = true; break;
		case '6': o.family = AF_INET6; break;
		case 'u': o.type = SOCK_DGRAM; break;
		case 'V': o.v6only = true; break;
		case 'r': o.reuseport = true; break;
		case 'a': case 'b': o.addr = optarg; break;
		case 'p':
			o.port = atoi(optarg);
			if (o.nports < MAX_PORTS)
				o.ports[o.nports++] = o.port;
			break;
		case 'S': o.src = optarg; break;
		case 'R': o.rate = atol(optarg); break;
		case 'c': o.conns = atoi(optarg); break;
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
	if (!strcmp(mode, "flood"))
		flood(&o);
	fprintf(stderr, "usage: pdsock serve|connect|flood [options]\n");
	return 2;
}
