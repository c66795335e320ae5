// SPDX-License-Identifier: GPL-2.0
/*
 * portdispatch never takes a flow away from a socket that already owns it,
 * and "replace" swaps a rule's target without a gap.
 *
 *	client 127.0.0.1:C ----> 127.0.0.1:80
 *	                           |
 *	         flow already has a socket?  (established, SYN_RECV request,
 *	            |yes           |no        connected UDP; a SYN that meets
 *	            v              v          TIME_WAIT counts as new)
 *	   the socket that    the rule's target, e.g. a listener on
 *	   owns it            127.0.0.1:8080 (it sees 127.0.0.1:80)
 *
 * Every test runs in a private network namespace (loopback only): its
 * rules, nftables table and sockets vanish with the test's process.
 * Listeners are watched with poll() together, so each check knows which
 * one got a connection.
 */

#include <netinet/tcp.h>
#include <pthread.h>
#include <time.h>

#include "harness.h"
#include "pd_test.h"

#define LO		"127.0.0.1"
#define PORT		80	/* the port the rules cover */
#define TARGET_PORT	8080	/* where the rules' target listens */
#define WAIT_MS		3000	/* for what must happen */
#define QUIET_MS	300	/* for what must not */

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = 2 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int tcp_listener(int port)
{
	return pd_server(AF_INET, SOCK_STREAM, LO, port, false);
}

/* The local (or the peer's) port of @fd, -1 if it has none. */
static int sock_port(int fd, bool peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int err;

	if (peer)
		err = getpeername(fd, (struct sockaddr *)&ss, &len);
	else
		err = getsockname(fd, (struct sockaddr *)&ss, &len);
	return err ? -1 : pd_sockaddr_port(&ss);
}

/* A TCP socket bound to 127.0.0.1:@port (0: any), not yet connected. */
static int tcp_client_bound(int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(AF_INET, LO, port, &ss);
	int fd, one = 1;
	long end = now_ms() + WAIT_MS;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	set_timeouts(fd);
	/* The last socket on this port may still be closing. */
	while (bind(fd, (struct sockaddr *)&ss, len)) {
		int err = -errno;

		if (err != -EADDRINUSE || now_ms() > end) {
			close(fd);
			return err;
		}
		usleep(20000);
	}
	return fd;
}

static int tcp_connect_fd(int fd, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(AF_INET, LO, port, &ss);

	return connect(fd, (struct sockaddr *)&ss, len) ? -errno : 0;
}

/*
 * Wait up to @ms for a connection on one of the @n listeners and accept it
 * into *@conn. Returns the index of the listener that had it, -1 if none.
 */
static int accept_any(const int *lfd, int n, int ms, int *conn)
{
	struct pollfd p[4];
	int i;

	*conn = -1;
	for (i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = lfd[i], .events = POLLIN };
	if (poll(p, n, ms) <= 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (!(p[i].revents & POLLIN))
			continue;
		*conn = accept(lfd[i], NULL, NULL);
		if (*conn < 0)
			return -1;
		set_timeouts(*conn);
		return i;
	}
	return -1;
}

/* Read exactly @len bytes within @ms: 0, or -errno (-EPIPE for EOF). */
static int recv_exact(int fd, void *buf, size_t len, int ms)
{
	long end = now_ms() + ms;
	size_t got = 0;

	while (got < len) {
		long left = end - now_ms();
		ssize_t n;

		if (left <= 0 || !pd_readable(fd, left))
			return -ETIMEDOUT;
		n = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);
		if (n == 0)
			return -EPIPE;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		if (n > 0)
			got += n;
	}
	return 0;
}

/*
 * @from sends @msg, @to must read exactly it: 0, or -errno (-EBADMSG when
 * other bytes came).
 */
static int xfer(int from, int to, const char *msg)
{
	size_t len = strlen(msg);
	char buf[256];
	int err;

	if (send(from, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -errno;
	err = recv_exact(to, buf, len, WAIT_MS);
	if (err)
		return err;
	return memcmp(buf, msg, len) ? -EBADMSG : 0;
}

/* One exchange each way on a connection: 0 or -errno. */
static int roundtrip(int client, int server, int i)
{
	char msg[64];
	int err;

	snprintf(msg, sizeof(msg), "request %d from the client", i);
	err = xfer(client, server, msg);
	if (err)
		return err;
	snprintf(msg, sizeof(msg), "reply %d from the server", i);
	return xfer(server, client, msg);
}

/* Byte @off of stream @seed: a stream that reordering or loss would break. */
static unsigned char pattern(unsigned int seed, size_t off)
{
	return (seed * 131 + off * 7 + (off >> 11)) & 0xff;
}

/*
 * Queue pattern bytes on @fd, from offset @off, until the kernel takes no
 * more without blocking or @cap bytes were sent. Returns the bytes sent.
 */
static size_t fill(int fd, unsigned int seed, size_t off, size_t cap)
{
	unsigned char buf[4096];
	size_t sent = 0;

	while (sent < cap) {
		size_t len = cap - sent < sizeof(buf) ? cap - sent : sizeof(buf);
		size_t i;
		ssize_t n;

		for (i = 0; i < len; i++)
			buf[i] = pattern(seed, off + sent + i);
		n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			break;
		sent += n;
	}
	return sent;
}

/*
 * Move @len pattern bytes from @from to @to (both directions of the socket
 * pair may be in flight at once), checking every byte that arrives from
 * offset @rx_off on. @tx_left bytes are still to be sent (0 when they all
 * are queued already). 0, or -errno (-EBADMSG for a wrong byte).
 */
static int pump(int from, int to, unsigned int seed, size_t rx_off,
		size_t len, size_t tx_left)
{
	size_t tx_off = rx_off + len - tx_left, end_off = rx_off + len;
	long deadline = now_ms() + 10 * WAIT_MS;
	unsigned char buf[16384];

	while (rx_off < end_off) {
		struct pollfd p[2] = {
			{ .fd = to, .events = POLLIN },
			{ .fd = from, .events = tx_left ? POLLOUT : 0 },
		};
		long left = deadline - now_ms();

		if (left <= 0 || poll(p, 2, left) <= 0)
			return -ETIMEDOUT;
		if (p[1].revents & POLLOUT) {
			size_t n = fill(from, seed, tx_off, tx_left);

			tx_off += n;
			tx_left -= n;
		}
		if (p[0].revents & (POLLIN | POLLERR | POLLHUP)) {
			size_t want = end_off - rx_off;
			ssize_t n, i;

			n = recv(to, buf, want < sizeof(buf) ? want : sizeof(buf),
				 MSG_DONTWAIT);
			if (n == 0)
				return -EPIPE;
			if (n < 0 && errno != EAGAIN)
				return -errno;
			for (i = 0; i < n; i++)
				if (buf[i] != pattern(seed, rx_off + i))
					return -EBADMSG;
			if (n > 0)
				rx_off += n;
		}
	}
	return 0;
}

/* @fd must see the peer's FIN, and nothing before it, within WAIT_MS. */
static bool sees_eof(int fd)
{
	char c;

	return pd_readable(fd, WAIT_MS) && recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

/* "portctl VERB PROTO PORT to pid <us> fd FD"; its output lands in @out. */
static int rule(char *out, size_t len, const char *verb, const char *proto,
		int port, int fd)
{
	return pd_portctl(out, len, "%s %s %d to pid %d fd %d", verb, proto,
			  port, (int)getpid(), fd);
}

/*
 * Is a TCP socket from 127.0.0.1:@lport to 127.0.0.1:@rport in @state (as
 * ss(8) names them)? 1 yes, 0 no, -1 when ss cannot tell.
 */
static int ss_has(const char *state, int lport, int rport)
{
	char cmd[256], out[4096], want[32];
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "ss -Htn state %s '( sport = :%d and dport = :%d )' 2>&1",
		 state, lport, rport);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	if (pclose(p))
		return -1;
	snprintf(want, sizeof(want), "127.0.0.1:%d", rport);
	return strstr(out, want) != NULL;
}

static bool have_ss(void)
{
	return !system("ss -V >/dev/null 2>&1");
}

/* Wait up to @ms for ss_has() to answer @want: the last answer. */
static int ss_wait(const char *state, int lport, int rport, int want, int ms)
{
	long end = now_ms() + ms;
	int r;

	while ((r = ss_has(state, lport, rport)) != want && r >= 0 &&
	       now_ms() < end)
		usleep(50000);
	return r;
}

FIXTURE(prec) {
	char out[1024];		/* the last portctl's output */
};

FIXTURE_SETUP(prec)
{
	int err = pd_enter_netns();

	ASSERT_EQ(0, err) TH_LOG("cannot make a network namespace: %s",
				 strerror(-err));
}

FIXTURE_TEARDOWN(prec)
{
	/* The namespace, its table and its sockets go with the process. */
}

/*
 * An established connection to a normal listener on 80 keeps working after
 * a rule for 80 is added: its data segments and ACKs (client to port 80,
 * the packets the rule covers) still reach the accepted socket, while a
 * new connection goes to the target.
 */
TEST_F(prec, established_keeps_its_socket)
{
	int l[2], c, s, c2, s2, i, err;

	l[0] = tcp_listener(PORT);
	l[1] = tcp_listener(TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);

	c = pd_connect(AF_INET, SOCK_STREAM, LO, PORT);
	ASSERT_LE(0, c) TH_LOG("connect to port %d: %s", PORT, strerror(-c));
	ASSERT_EQ(0, accept_any(l, 2, WAIT_MS, &s))
		TH_LOG("the normal listener on %d did not get the connection",
		       PORT);
	ASSERT_EQ(0, roundtrip(c, s, 0));

	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT,
			  l[1])) TH_LOG("portctl add: %s", self->out);

	for (i = 1; i <= 5; i++) {
		err = roundtrip(c, s, i);
		ASSERT_EQ(0, err)
			TH_LOG("exchange %d after the rule on the established connection: %s",
			       i, strerror(-err));
	}
	/* Many segments, and many ACKs to port 80, in both directions. */
	err = pump(c, s, 1, 0, 256 << 10, 256 << 10);
	ASSERT_EQ(0, err) TH_LOG("client to server bulk after the rule: %s",
				 strerror(-err));
	err = pump(s, c, 2, 0, 256 << 10, 256 << 10);
	ASSERT_EQ(0, err) TH_LOG("server to client bulk after the rule: %s",
				 strerror(-err));

	/* A new connection is the target's, with the address the client used. */
	c2 = pd_connect(AF_INET, SOCK_STREAM, LO, PORT);
	ASSERT_LE(0, c2) TH_LOG("new connection: %s", strerror(-c2));
	ASSERT_EQ(1, accept_any(l, 2, WAIT_MS, &s2))
		TH_LOG("a new connection to %d did not reach the target", PORT);
	EXPECT_EQ(PORT, sock_port(s2, false));
	EXPECT_EQ(0, roundtrip(c2, s2, 0));

	/* The old connection still works, and closes cleanly both ways. */
	ASSERT_EQ(0, roundtrip(c, s, 6));
	ASSERT_EQ(0, shutdown(c, SHUT_WR));
	EXPECT_TRUE(sees_eof(s)) TH_LOG("the client's FIN did not reach its socket");
	ASSERT_EQ(0, shutdown(s, SHUT_WR));
	EXPECT_TRUE(sees_eof(c)) TH_LOG("the server's FIN did not reach the client");
	EXPECT_FALSE(pd_readable(l[0], QUIET_MS));
	EXPECT_FALSE(pd_readable(l[1], QUIET_MS))
		TH_LOG("the target got a connection of the old flow");
}

/* Run nft with @script on its standard input: nft's exit status, or -1. */
static int nft(const char *script)
{
	FILE *p = popen("nft -f - 2>&1", "w");

	if (!p)
		return -1;
	fputs(script, p);
	return pclose(p);
}

/*
 * A handshake still in progress (the server side a SYN_RECV request socket)
 * when the rule is added completes on the original listener. nftables
 * drops the client's ACK of the SYN-ACK, so the client is connected while
 * the server waits; the data that finally completes the handshake arrives
 * after the rule exists.
 */
TEST_F(prec, handshake_in_progress_keeps_its_listener)
{
	char script[512], buf[32];
	int l[2], c, cport, s, c2, s2, err;

	if (!have_ss())
		SKIP(return, "ss (iproute2) is not installed");
	if (system("nft --version >/dev/null 2>&1"))
		SKIP(return, "nft is not installed");
	if (nft("add table inet pd_precedence\n"))
		SKIP(return, "nf_tables is not available");

	l[0] = tcp_listener(PORT);
	l[1] = tcp_listener(TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);
	c = tcp_client_bound(0);
	ASSERT_LE(0, c);
	cport = sock_port(c, false);

	snprintf(script, sizeof(script),
		 "add chain inet pd_precedence out { type filter hook output priority 0; }\n"
		 "add rule inet pd_precedence out ip saddr 127.0.0.1 tcp sport %d tcp dport %d tcp flags & (syn | ack) == ack counter drop\n",
		 cport, PORT);
	ASSERT_EQ(0, nft(script)) TH_LOG("cannot install the nftables drop rule");

	err = tcp_connect_fd(c, PORT);
	ASSERT_EQ(0, err) TH_LOG("connect: %s", strerror(-err));
	/* The client is connected, the server still waits for its ACK. */
	EXPECT_FALSE(pd_readable(l[0], QUIET_MS))
		TH_LOG("the handshake completed: the ACK was not dropped");
	EXPECT_EQ(1, ss_has("syn-recv", PORT, cport))
		TH_LOG("no SYN_RECV request socket for port %d", cport);

	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT,
			  l[1])) TH_LOG("portctl add: %s", self->out);
	ASSERT_EQ(0, nft("delete table inet pd_precedence\n"));

	/* Its ACK flag completes the handshake on the request socket. */
	ASSERT_EQ(6, send(c, "hello!", 6, MSG_NOSIGNAL))
		TH_LOG("send: %s", strerror(errno));
	ASSERT_EQ(0, accept_any(l, 2, WAIT_MS, &s))
		TH_LOG("the original listener did not complete the handshake");
	EXPECT_EQ(cport, sock_port(s, true));
	err = recv_exact(s, buf, 6, WAIT_MS);
	ASSERT_EQ(0, err) TH_LOG("the original listener's socket: %s",
				 strerror(-err));
	EXPECT_EQ(0, memcmp(buf, "hello!", 6));
	err = xfer(s, c, "welcome");
	EXPECT_EQ(0, err) TH_LOG("reply to the client: %s", strerror(-err));
	EXPECT_FALSE(pd_readable(l[1], QUIET_MS))
		TH_LOG("the target got a connection");

	/* The rule was in force all along: a new connection is the target's. */
	c2 = pd_connect(AF_INET, SOCK_STREAM, LO, PORT);
	ASSERT_LE(0, c2);
	EXPECT_EQ(1, accept_any(l, 2, WAIT_MS, &s2));
}

/*
 * What reopen_after_time_wait() saw: which of the two listeners accepted
 * each connection, and the step that failed if one did.
 */
struct reopen {
	int first, second;	/* index into l[] of who accepted */
	int cport;		/* the client's port, both times */
	int c, s;		/* the second connection, both ends */
	int tw_after;		/* the TIME_WAIT socket after the reopen */
	int err;		/* errno of the step that failed */
	const char *step;	/* what failed, NULL when nothing did */
};

/*
 * Connect to port 80 from a port of our own, have the server close first
 * so that its side sits in TIME_WAIT, then connect again from the same
 * port: the same 4-tuple.
 */
static void reopen_after_time_wait(const int *l, struct reopen *r)
{
	int c, s, err;

	memset(r, 0, sizeof(*r));
	r->first = r->second = r->c = r->s = -1;

	c = tcp_client_bound(0);
	if (c < 0) {
		r->step = "binding the client";
		r->err = -c;
		return;
	}
	r->cport = sock_port(c, false);
	err = tcp_connect_fd(c, PORT);
	if (err) {
		r->step = "first connect";
		r->err = -err;
		return;
	}
	r->first = accept_any(l, 2, WAIT_MS, &s);
	if (r->first < 0) {
		r->step = "first accept";
		return;
	}
	err = roundtrip(c, s, 0);
	if (err) {
		r->step = "first exchange";
		r->err = -err;
		return;
	}
	/* The server closes first: its side ends in TIME_WAIT. */
	close(s);
	if (!sees_eof(c)) {
		r->step = "the server's FIN";
		return;
	}
	close(c);
	if (ss_wait("time-wait", PORT, r->cport, 1, WAIT_MS) != 1) {
		r->step = "the server side entering TIME_WAIT";
		return;
	}

	/* Same 4-tuple; the SYN's timestamp and sequence are newer. */
	r->c = tcp_client_bound(r->cport);
	if (r->c < 0) {
		r->step = "binding the client's port again";
		r->err = -r->c;
		return;
	}
	err = tcp_connect_fd(r->c, PORT);
	if (err) {
		r->step = "second connect";
		r->err = -err;
		return;
	}
	r->second = accept_any(l, 2, WAIT_MS, &r->s);
	if (r->second < 0) {
		r->step = "second accept";
		return;
	}
	r->tw_after = ss_has("time-wait", PORT, r->cport);
}

/*
 * A SYN that reopens a 4-tuple whose server side is in TIME_WAIT is a new
 * flow: the rule's target takes it, as TPROXY's would, not the normal
 * listener that the stack's own TIME_WAIT handling would pick.
 */
TEST_F(prec, time_wait_reopen_is_a_new_flow)
{
	struct reopen r;
	int l[2];

	if (!have_ss())
		SKIP(return, "ss (iproute2) is not installed");
	l[0] = tcp_listener(PORT);
	l[1] = tcp_listener(TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);
	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT,
			  l[1])) TH_LOG("portctl add: %s", self->out);

	reopen_after_time_wait(l, &r);
	ASSERT_TRUE(r.step == NULL)
		TH_LOG("%s failed: %s", r.step, strerror(r.err));
	ASSERT_EQ(1, r.first) TH_LOG("the first connection was not steered");
	ASSERT_EQ(1, r.second)
		TH_LOG("the reopening SYN went to %s, not the rule's target",
		       r.second == 0 ? "the normal listener" : "nobody");
	EXPECT_EQ(r.cport, sock_port(r.s, true));
	EXPECT_EQ(PORT, sock_port(r.s, false));
	EXPECT_FALSE(pd_readable(l[0], QUIET_MS));
	EXPECT_EQ(0, r.tw_after)
		TH_LOG("the TIME_WAIT socket outlived the new connection");
	EXPECT_EQ(0, roundtrip(r.c, r.s, 1));
}

/*
 * The same reopen with no rule for the port (a rule for another one keeps
 * the hook busy) goes to the normal listener: the stack itself accepts the
 * reopening SYN, so the test above exercises the TIME_WAIT path.
 */
TEST_F(prec, time_wait_reopen_without_rule_goes_to_listener)
{
	struct reopen r;
	int l[2];

	if (!have_ss())
		SKIP(return, "ss (iproute2) is not installed");
	l[0] = tcp_listener(PORT);
	l[1] = tcp_listener(TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);
	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT + 1,
			  l[1])) TH_LOG("portctl add: %s", self->out);

	reopen_after_time_wait(l, &r);
	ASSERT_TRUE(r.step == NULL)
		TH_LOG("%s failed: %s", r.step, strerror(r.err));
	ASSERT_EQ(0, r.first);
	ASSERT_EQ(0, r.second)
		TH_LOG("the reopening SYN went to %s, not the normal listener",
		       r.second == 1 ? "the target" : "nobody");
	EXPECT_EQ(r.cport, sock_port(r.s, true));
	EXPECT_FALSE(pd_readable(l[1], QUIET_MS));
	EXPECT_EQ(0, roundtrip(r.c, r.s, 1));
}

#define UDP_PORT	5353
#define UDP_TARGET_PORT	5354

static int udp_bound(int port)
{
	return pd_server(AF_INET, SOCK_DGRAM, LO, port, false);
}

static int udp_send(int fd, int port, const char *msg)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(AF_INET, LO, port, &ss);

	if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&ss, len) < 0)
		return -errno;
	return 0;
}

/*
 * A datagram waiting on @fd within @ms: its length (-1 if none), the
 * sender's port in *@peer and, where the socket asked for
 * IP_RECVORIGDSTADDR, the port it was sent to in *@dst.
 */
static int udp_recv(int fd, char *buf, size_t len, int ms, int *peer,
		    int *dst)
{
	char cbuf[CMSG_SPACE(sizeof(struct sockaddr_in))];
	struct sockaddr_storage from;
	struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
	struct msghdr mh = {
		.msg_name = &from, .msg_namelen = sizeof(from),
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;
	ssize_t n;

	*peer = *dst = -1;
	if (!pd_readable(fd, ms))
		return -1;
	n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	*peer = pd_sockaddr_port(&from);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_IP &&
		    cm->cmsg_type == IP_ORIGDSTADDR)
			*dst = ntohs(((struct sockaddr_in *)
				      CMSG_DATA(cm))->sin_port);
	return n;
}

/*
 * A UDP socket on 127.0.0.1:5353 connected to client C keeps C's
 * datagrams after a rule for 5353; datagrams from another client D are
 * new flows and go to the target, with their destination intact.
 */
TEST_F(prec, connected_udp_keeps_its_datagrams)
{
	struct sockaddr_storage ss;
	int u, t, cl, d, cport, dport, i, n, peer, dst;
	char msg[64], buf[128];
	socklen_t len;

	cl = udp_bound(0);
	d = udp_bound(0);
	ASSERT_LE(0, cl);
	ASSERT_LE(0, d);
	cport = sock_port(cl, false);
	dport = sock_port(d, false);

	u = udp_bound(UDP_PORT);
	ASSERT_LE(0, u);
	len = pd_sockaddr(AF_INET, LO, cport, &ss);
	ASSERT_EQ(0, connect(u, (struct sockaddr *)&ss, len));
	t = udp_bound(UDP_TARGET_PORT);
	ASSERT_LE(0, t);
	ASSERT_EQ(0, setsockopt(t, SOL_IP, IP_RECVORIGDSTADDR, &(int){ 1 },
				sizeof(int)));

	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "udp",
			  UDP_PORT, t)) TH_LOG("portctl add: %s", self->out);

	for (i = 0; i < 4; i++) {
		snprintf(msg, sizeof(msg), "from C %d", i);
		ASSERT_EQ(0, udp_send(cl, UDP_PORT, msg));
		snprintf(msg, sizeof(msg), "from D %d", i);
		ASSERT_EQ(0, udp_send(d, UDP_PORT, msg));
	}
	for (i = 0; i < 4; i++) {
		snprintf(msg, sizeof(msg), "from C %d", i);
		n = udp_recv(u, buf, sizeof(buf), WAIT_MS, &peer, &dst);
		ASSERT_LT(0, n) TH_LOG("the connected socket lost \"%s\"", msg);
		EXPECT_STREQ(msg, buf);
		EXPECT_EQ(cport, peer);

		snprintf(msg, sizeof(msg), "from D %d", i);
		n = udp_recv(t, buf, sizeof(buf), WAIT_MS, &peer, &dst);
		ASSERT_LT(0, n) TH_LOG("the target did not get \"%s\"", msg);
		EXPECT_STREQ(msg, buf);
		EXPECT_EQ(dport, peer);
		EXPECT_EQ(UDP_PORT, dst)
			TH_LOG("the target saw destination port %d", dst);
	}
	/* Nothing strayed: no datagram of C at the target, none left over. */
	EXPECT_GT(0, udp_recv(t, buf, sizeof(buf), QUIET_MS, &peer, &dst))
		TH_LOG("the target got \"%s\" from port %d", buf, peer);
	EXPECT_GT(0, udp_recv(u, buf, sizeof(buf), 0, &peer, &dst))
		TH_LOG("the connected socket got \"%s\" from port %d", buf, peer);

	/* And the connected socket still answers C. */
	ASSERT_EQ(5, send(u, "reply", 5, 0));
	n = udp_recv(cl, buf, sizeof(buf), WAIT_MS, &peer, &dst);
	EXPECT_EQ(5, n);
	EXPECT_EQ(UDP_PORT, peer);
}

/*
 * Replace churn: a client connects to 80 in a loop, each connection
 * reading the marker its acceptor writes ('A' or 'B'), while the main
 * thread swaps the rule's target between A and B.
 */
struct churn {
	int lfd[2];		/* A and B */
	int stop_client, stop_acceptor;
	char last;		/* the marker of the latest connection */
	unsigned long ok, refused, reset, timed_out, retrans, other;
	unsigned long accepted[2];
	long slowest_ms;	/* the slowest good connection */
	char failure[160];	/* what the first bad connection saw */
};

static void *churn_acceptor(void *arg)
{
	struct churn *ch = arg;

	while (!__atomic_load_n(&ch->stop_acceptor, __ATOMIC_ACQUIRE)) {
		struct pollfd p[2] = {
			{ .fd = ch->lfd[0], .events = POLLIN },
			{ .fd = ch->lfd[1], .events = POLLIN },
		};
		int i, fd;

		if (poll(p, 2, 50) <= 0)
			continue;
		for (i = 0; i < 2; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			fd = accept(ch->lfd[i], NULL, NULL);
			if (fd < 0)
				continue;
			send(fd, i ? "B" : "A", 1, MSG_NOSIGNAL);
			close(fd);
			__atomic_add_fetch(&ch->accepted[i], 1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

/*
 * Generous limits: on loopback a connection is set up within the connect
 * call, so only a lost SYN or a starved guest takes long, and a lost SYN
 * shows as a retransmission anyway.
 */
#define CHURN_TIMEOUT_S	10

/*
 * One connection: 0 with its marker in *@m, or an errno; a connection that
 * worked only after retransmitting its SYN is -1.
 */
static int churn_once(struct churn *ch, char *m)
{
	struct timeval tv = { .tv_sec = CHURN_TIMEOUT_S };
	const char *phase = "connect";
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(AF_INET, LO, PORT, &ss);
	struct tcp_info ti = { 0 };
	long start = now_ms(), took;
	int fd, err = 0;
	ssize_t n;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len)) {
		err = errno;
	} else {
		phase = "reading the marker";
		n = recv(fd, m, 1, 0);
		if (n < 0)
			err = errno;
		else if (n == 0 || (*m != 'A' && *m != 'B'))
			err = EBADMSG;
	}
	took = now_ms() - start;
	len = sizeof(ti);
	getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
	close(fd);

	if (!err && ti.tcpi_total_retrans)
		err = -1;
	if (err && !ch->failure[0])
		snprintf(ch->failure, sizeof(ch->failure),
			 "%s: %s after %ld ms (TCP state %u, %u retransmissions)",
			 phase, err < 0 ? "worked" : strerror(err), took,
			 ti.tcpi_state, ti.tcpi_total_retrans);
	if (!err && took > ch->slowest_ms)
		ch->slowest_ms = took;
	return err;
}

static void *churn_client(void *arg)
{
	struct churn *ch = arg;

	while (!__atomic_load_n(&ch->stop_client, __ATOMIC_ACQUIRE)) {
		char m = 0;

		switch (churn_once(ch, &m)) {
		case 0:
			ch->ok++;
			__atomic_store_n(&ch->last, m, __ATOMIC_RELEASE);
			break;
		case -1:
			ch->retrans++;
			break;
		case ECONNREFUSED:
			ch->refused++;
			break;
		case ECONNRESET:
			ch->reset++;
			break;
		case EINPROGRESS:	/* connect's SO_SNDTIMEO */
		case EAGAIN:		/* recv's SO_RCVTIMEO */
		case ETIMEDOUT:
			ch->timed_out++;
			break;
		default:
			ch->other++;
			break;
		}
	}
	return NULL;
}

#define REPLACES	25	/* odd: the last one is to B */

/*
 * "replace" has no gap: connections opened in a tight loop while the
 * rule's target flips between A and B twenty-five times are all accepted
 * by A or B, none refused, reset or retransmitted. A connection A accepted
 * before the flips keeps exchanging data afterwards.
 */
TEST_F_TIMEOUT(prec, replace_is_atomic, 120)
{
	struct churn ch = { 0 };
	pthread_t client, acceptor;
	int c, s, l[2], i, rc, bad_rc = 0;
	unsigned long seen_switch = 0;

	ch.lfd[0] = tcp_listener(TARGET_PORT + 1);
	ch.lfd[1] = tcp_listener(TARGET_PORT + 2);
	ASSERT_LE(0, ch.lfd[0]);
	ASSERT_LE(0, ch.lfd[1]);
	l[0] = ch.lfd[0];
	l[1] = ch.lfd[1];
	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT,
			  l[0])) TH_LOG("portctl add: %s", self->out);

	/* The long-lived connection, through A. */
	c = pd_connect(AF_INET, SOCK_STREAM, LO, PORT);
	ASSERT_LE(0, c) TH_LOG("connect: %s", strerror(-c));
	ASSERT_EQ(0, accept_any(l, 2, WAIT_MS, &s))
		TH_LOG("A did not get the first connection");
	ASSERT_EQ(0, roundtrip(c, s, 0));

	ASSERT_EQ(0, pthread_create(&acceptor, NULL, churn_acceptor, &ch));
	ASSERT_EQ(0, pthread_create(&client, NULL, churn_client, &ch));

	for (i = 0; i < REPLACES; i++) {
		char want = i % 2 ? 'A' : 'B';
		long end;

		rc = rule(self->out, sizeof(self->out), "replace", "tcp", PORT,
			  l[want - 'A']);
		if (rc) {
			bad_rc = rc;
			TH_LOG("replace %d to %c exited %d: %s", i, want, rc,
			       self->out);
			break;
		}
		/* Let the client see the new target before the next flip. */
		end = now_ms() + CHURN_TIMEOUT_S * 1000;
		while (__atomic_load_n(&ch.last, __ATOMIC_ACQUIRE) != want &&
		       now_ms() < end)
			usleep(2000);
		if (__atomic_load_n(&ch.last, __ATOMIC_ACQUIRE) == want)
			seen_switch++;
	}

	__atomic_store_n(&ch.stop_client, 1, __ATOMIC_RELEASE);
	pthread_join(client, NULL);
	__atomic_store_n(&ch.stop_acceptor, 1, __ATOMIC_RELEASE);
	pthread_join(acceptor, NULL);

	TH_LOG("%lu good connections (A accepted %lu, B %lu, slowest %ld ms); refused %lu, reset %lu, timed out %lu, SYN retransmitted %lu, other %lu",
	       ch.ok, ch.accepted[0], ch.accepted[1], ch.slowest_ms,
	       ch.refused, ch.reset, ch.timed_out, ch.retrans, ch.other);
	if (ch.failure[0])
		TH_LOG("the first bad connection: %s", ch.failure);
	ASSERT_EQ(0, bad_rc);
	EXPECT_EQ(0UL, ch.refused);
	EXPECT_EQ(0UL, ch.reset);
	EXPECT_EQ(0UL, ch.timed_out);
	EXPECT_EQ(0UL, ch.retrans);
	EXPECT_EQ(0UL, ch.other);
	/* Every flip took effect, with connections on both sides of it. */
	EXPECT_EQ((unsigned long)REPLACES, seen_switch);
	EXPECT_LE(2UL * REPLACES, ch.ok);

	/* A took the long-lived connection; the rule now names B. */
	for (i = 1; i <= 3; i++)
		EXPECT_EQ(0, roundtrip(c, s, i))
			TH_LOG("the connection accepted by A, after the flips");
	EXPECT_EQ(0, shutdown(c, SHUT_WR));
	EXPECT_TRUE(sees_eof(s));
}

#define NCONN		5
#define PENDING_CAP	(512 << 10)

/*
 * Five connections of the normal listener, each with data queued in both
 * directions, are not disturbed by a rule for their port: every byte
 * arrives, in order, and they keep working. Deleting the rule hands new
 * connections back to the normal listener.
 */
TEST_F_TIMEOUT(prec, rule_disturbs_no_open_connection, 60)
{
	size_t up[NCONN], down[NCONN];
	int c[NCONN], s[NCONN], l[2], i, err, c2, s2;

	l[0] = tcp_listener(PORT);
	l[1] = tcp_listener(TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);

	for (i = 0; i < NCONN; i++) {
		c[i] = pd_connect(AF_INET, SOCK_STREAM, LO, PORT);
		ASSERT_LE(0, c[i]) TH_LOG("connect %d: %s", i, strerror(-c[i]));
		ASSERT_EQ(0, accept_any(l, 2, WAIT_MS, &s[i]))
			TH_LOG("connection %d did not reach the normal listener",
			       i);
		ASSERT_EQ(0, roundtrip(c[i], s[i], 0));
		/* Nobody reads: the receive queues and send queues fill up. */
		up[i] = fill(c[i], 10 + i, 0, PENDING_CAP);
		down[i] = fill(s[i], 20 + i, 0, PENDING_CAP);
		ASSERT_LT(0UL, up[i]);
		ASSERT_LT(0UL, down[i]);
	}

	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT,
			  l[1])) TH_LOG("portctl add: %s", self->out);
	c2 = pd_connect(AF_INET, SOCK_STREAM, LO, PORT);
	ASSERT_LE(0, c2);
	ASSERT_EQ(1, accept_any(l, 2, WAIT_MS, &s2))
		TH_LOG("the rule does not steer new connections");
	close(c2);
	close(s2);

	/*
	 * Reading releases what the senders still hold: their segments and
	 * the readers' window updates cross the hook after the rule.
	 */
	for (i = 0; i < NCONN; i++) {
		err = pump(c[i], s[i], 10 + i, 0, up[i], 0);
		ASSERT_EQ(0, err) TH_LOG("connection %d, client to server, %zu bytes queued before the rule: %s",
					 i, up[i], strerror(-err));
		err = pump(s[i], c[i], 20 + i, 0, down[i], 0);
		ASSERT_EQ(0, err) TH_LOG("connection %d, server to client, %zu bytes queued before the rule: %s",
					 i, down[i], strerror(-err));
		err = roundtrip(c[i], s[i], 1);
		ASSERT_EQ(0, err) TH_LOG("connection %d after the rule: %s", i,
					 strerror(-err));
	}

	ASSERT_EQ(0, pd_portctl(self->out, sizeof(self->out), "del tcp %d",
				PORT)) TH_LOG("portctl del: %s", self->out);
	c2 = pd_connect(AF_INET, SOCK_STREAM, LO, PORT);
	ASSERT_LE(0, c2);
	ASSERT_EQ(0, accept_any(l, 2, WAIT_MS, &s2))
		TH_LOG("after del, a new connection did not reach the normal listener");
	EXPECT_EQ(0, roundtrip(c2, s2, 0));

	for (i = 0; i < NCONN; i++) {
		EXPECT_EQ(0, roundtrip(c[i], s[i], 2));
		EXPECT_EQ(0, shutdown(c[i], SHUT_WR));
		EXPECT_TRUE(sees_eof(s[i]));
	}
	EXPECT_FALSE(pd_readable(l[1], QUIET_MS))
		TH_LOG("the target got a connection it should not have");
}

TEST_HARNESS_MAIN
