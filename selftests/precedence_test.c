// SPDX-License-Identifier: GPL-2.0
/*
 * portdispatch never takes a flow away from a socket that already owns it,
 * and "replace" swaps a rule's target without a gap.
 *
 *	client C:c ----> S:80
 *	                   |
 *	         flow already has a socket?  (established, SYN_RECV request,
 *	            |yes           |no        connected UDP, TIME_WAIT unless
 *	            v              v          TCP itself would take the SYN)
 *	   the socket that    the rule's target, e.g. a listener on
 *	   owns it            S:8080 (it sees S:80)
 *
 * The "flow" tests run over each of these paths (fixture variants):
 *
 *	lo4		C = S = 127.0.0.1, one namespace. Loopback keeps
 *			the output route, so early demux never runs.
 *	veth4, veth6	C = 198.18.0.2 or 2001:db8::2 in a namespace of its
 *			own, S = 198.18.0.1 or 2001:db8::1 in the test's:
 *
 *	  [ client ns ] pd-cli ===== veth ===== pd-srv [ test's ns: rules ]
 *
 *			so early demux hands established and TIME_WAIT TCP,
 *			request sockets and connected UDP their socket
 *			before routing.
 *	*_no_early_demux  the same with net.ipv4.tcp_early_demux and
 *			udp_early_demux 0 in both namespaces (IPv6 too).
 *
 * The TIME_WAIT tests craft the SYN that meets TIME_WAIT with a raw
 * socket: TCP itself takes it only with a good checksum and a sequence
 * number after what the TIME_WAIT socket expects (no timestamp is sent, so
 * no PAWS); only then may the rule's target get it. The number comes from
 * TCP_REPAIR on the client before it closes. The target's listener
 * advertises MARK_MSS, so a SYN-ACK says who answered.
 *
 * The "prec" tests (replace churn, open connections) run on loopback.
 * Every test runs in private network namespaces: its rules, nftables
 * tables, veth and sockets vanish with the test's process. Listeners are
 * watched with poll() together, so each check knows which one got a
 * connection.
 */

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "harness.h"
#include "pd_link.h"
#include "pd_test.h"

#define LO		"127.0.0.1"
#define PORT		80	/* the port the rules cover */
#define TARGET_PORT	8080	/* where the rules' target listens */
#define MARK_MSS	1000	/* the MSS a marked listener advertises */
/* Bounds on Debian's kernels, scaled to this one (pd_ms()). */
#define WAIT_MS		pd_ms(3000)	/* for what must happen */
#define QUIET_MS	pd_ms(300)	/* for what must not */

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = pd_ms(2000) / 1000 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/*
 * Where a test's flows run: the client's and the server's addresses, and
 * the client's namespace when it has one of its own. The test process
 * lives in the server's namespace (srv_ns), where the rules, listeners
 * and their sock_diag are; client sockets are made in cli_ns and stay
 * there.
 */
struct path {
	int family;
	const char *srv;
	const char *cli;
	int srv_ns, cli_ns;	/* namespace fds; -1: both are the test's */
};

static const struct path lo4 = {
	.family = AF_INET, .srv = LO, .cli = LO, .srv_ns = -1, .cli_ns = -1,
};

/*
 * Move the test's (single) thread into namespace @ns, -1 staying put. A
 * socket belongs for its whole life to the namespace it was made in, and
 * a child process starts in its parent's.
 */
static int enter_ns(int ns)
{
	return ns < 0 || !setns(ns, CLONE_NEWNET) ? 0 : -errno;
}

/* Back to the server's namespace, where the test lives. */
static void go_home(const struct path *p)
{
	if (enter_ns(p->srv_ns)) {
		/* Stranded on the client's side: nothing after is sound. */
		perror("setns back to the server's namespace");
		abort();
	}
}

/* A socket of the client's namespace: its fd, or -errno. */
static int cli_socket(const struct path *p, int type, int protocol)
{
	int fd, err;

	err = enter_ns(p->cli_ns);
	if (err)
		return err;
	fd = socket(p->family, type, protocol);
	err = fd < 0 ? -errno : 0;
	go_home(p);
	return err ? err : fd;
}

static int tcp_listener(const struct path *p, int port)
{
	return pd_server(p->family, SOCK_STREAM, p->srv, port, false);
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

/* A client socket bound to the client's @port (0: any), not connected. */
static int client_bound(const struct path *p, int type, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(p->family, p->cli, port, &ss);
	int fd, one = 1, err;

	fd = cli_socket(p, type, 0);
	if (fd < 0)
		return fd;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	set_timeouts(fd);
	err = pd_bind_retry(fd, &ss, len, WAIT_MS);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

static int tcp_client_bound(const struct path *p, int port)
{
	return client_bound(p, SOCK_STREAM, port);
}

/* Connect @fd (or send on it: UDP) to the server's @port. */
static int connect_to(const struct path *p, int fd, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(p->family, p->srv, port, &ss);

	return connect(fd, (struct sockaddr *)&ss, len) ? -errno : 0;
}

/* A new connection from the client to the server's @port: fd or -errno. */
static int tcp_connect(const struct path *p, int port)
{
	int fd = tcp_client_bound(p, 0), err;

	if (fd < 0)
		return fd;
	err = connect_to(p, fd, port);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
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
	long end = pd_now_ms() + ms;
	size_t got = 0;

	while (got < len) {
		long left = end - pd_now_ms();
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
	long deadline = pd_now_ms() + 10 * WAIT_MS;
	unsigned char buf[16384];

	while (rx_off < end_off) {
		struct pollfd p[2] = {
			{ .fd = to, .events = POLLIN },
			{ .fd = from, .events = tx_left ? POLLOUT : 0 },
		};
		long left = deadline - pd_now_ms();

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
 * The state of the server's TCP socket from its @lport to the client's
 * @rport, asked of sock_diag as ss(8) asks it (a request socket is
 * TCP_SYN_RECV, a TIME_WAIT socket its substate): a TCP_* state, 0 when
 * there is no such socket, -errno when the kernel would not say. No
 * process is started: on the debug kernel every fork costs.
 */
static int tcp_state(const struct path *p, int lport, int rport)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {
		.nlh = {
			.nlmsg_len = sizeof(msg),
			.nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
		},
		.req = {
			.sdiag_family = p->family,
			.sdiag_protocol = IPPROTO_TCP,
			.idiag_states = ~0u,
			.id.idiag_sport = htons(lport),
			.id.idiag_dport = htons(rport),
		},
	};
	static char buf[32768];
	int fd, state = 0, done = 0;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	if (send(fd, &msg, sizeof(msg), 0) < 0)
		done = -errno;
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n <= 0) {
			done = n < 0 ? -errno : -EIO;
			break;
		}
		for (; NLMSG_OK(h, (size_t)n) && !done; h = NLMSG_NEXT(h, n)) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE)
				done = 1;
			else if (h->nlmsg_type == NLMSG_ERROR)
				done = ((struct nlmsgerr *)m)->error ?: -EIO;
			else if (!state && ntohs(m->id.idiag_sport) == lport &&
				 ntohs(m->id.idiag_dport) == rport)
				state = m->idiag_state;
		}
	}
	close(fd);
	return done < 0 ? done : state;
}

/* Wait up to @ms for tcp_state() to answer @want: the last answer. */
static int wait_state(const struct path *p, int lport, int rport, int want,
		      int ms)
{
	long end = pd_now_ms() + ms;
	int r;

	while ((r = tcp_state(p, lport, rport)) != want && r >= 0 &&
	       pd_now_ms() < end)
		usleep(20000);
	return r;
}

/*
 * Run nft with @script on its standard input, on the client's side (where
 * its packets leave): 0 when nft succeeded. Its messages go to our output,
 * into the test's log.
 */
static int nft(const struct path *p, const char *script)
{
	int status = -1;
	FILE *f;

	/* popen's child is forked in the namespace we are in. */
	if (enter_ns(p->cli_ns))
		return -1;
	f = popen("nft -f -", "w");
	if (f) {
		fputs(script, f);
		status = pclose(f);
	}
	go_home(p);
	return f && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Also makes the test's table, on the client's side. */
static bool have_nft(const struct path *p)
{
	return !nft(p, "add table inet pd_precedence\n");
}

/* Write @val into /proc/sys/@name, for the namespace we are in. */
static int sysctl_set(const char *name, const char *val)
{
	char path[128];
	int fd, err = 0;

	snprintf(path, sizeof(path), "/proc/sys/%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* The veth's addresses: both families on both ends, whatever the variant. */
#define SRV4	"198.18.0.1"
#define CLI4	"198.18.0.2"
#define SRV6	"2001:db8::1"
#define CLI6	"2001:db8::2"

/*
 * Address one end of the veth, bring it up and set that side's early
 * demux: NULL, or what failed (errno says why).
 */
static const char *veth_end(const struct path *p, bool client,
			    bool early_demux)
{
	const char *demux = early_demux ? "1" : "0", *what;
	int err = 0;

	if (enter_ns(client ? p->cli_ns : p->srv_ns))
		return "setns";
	what = pd_link_setup(client ? "pd-cli" : "pd-srv",
			     client ? CLI4 : SRV4, client ? CLI6 : SRV6);
	if (what)
		err = -errno;
	else if ((err = sysctl_set("net/ipv4/tcp_early_demux", demux)) ||
		 (err = sysctl_set("net/ipv4/udp_early_demux", demux)))
		what = "net.ipv4.{tcp,udp}_early_demux";
	go_home(p);
	errno = -err;
	return what;
}

FIXTURE(flow) {
	struct path p;
	char out[1024];		/* the last portctl's output */
};

FIXTURE_VARIANT(flow) {
	int family;
	bool veth;		/* else loopback, one namespace */
	bool early_demux;	/* over veth: on, or off in both namespaces */
};

FIXTURE_VARIANT_ADD(flow, lo4) {
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(flow, veth4) {
	.family = AF_INET, .veth = true, .early_demux = true,
};

FIXTURE_VARIANT_ADD(flow, veth4_no_early_demux) {
	.family = AF_INET, .veth = true, .early_demux = false,
};

FIXTURE_VARIANT_ADD(flow, veth6) {
	.family = AF_INET6, .veth = true, .early_demux = true,
};

FIXTURE_VARIANT_ADD(flow, veth6_no_early_demux) {
	.family = AF_INET6, .veth = true, .early_demux = false,
};

FIXTURE_SETUP(flow)
{
	struct path *p = &self->p;
	bool v4 = variant->family == AF_INET;
	int err = pd_enter_netns();
	const char *what;

	ASSERT_EQ(0, err) TH_LOG("cannot make a network namespace: %s",
				 strerror(-err));
	*p = (struct path){ .family = variant->family, .srv_ns = -1,
			    .cli_ns = -1 };
	if (!variant->veth) {
		p->srv = p->cli = v4 ? LO : "::1";
		return;
	}
	p->srv = v4 ? SRV4 : SRV6;
	p->cli = v4 ? CLI4 : CLI6;

	/* We stay in the server's namespace; the client gets a new one. */
	p->srv_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, p->srv_ns);
	err = pd_enter_netns();
	ASSERT_EQ(0, err) TH_LOG("the client's namespace: %s", strerror(-err));
	p->cli_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, p->cli_ns);
	ASSERT_EQ(0, enter_ns(p->srv_ns));

	/* Made on the client's side, its peer goes to the server's. */
	ASSERT_EQ(0, enter_ns(p->cli_ns));
	err = pd_make_veth("pd-cli", "pd-srv", p->srv_ns);
	ASSERT_EQ(0, enter_ns(p->srv_ns));
	ASSERT_EQ(0, err) TH_LOG("cannot make the veth pair: %s",
				 strerror(-err));
	what = veth_end(p, true, variant->early_demux);
	ASSERT_EQ(NULL, what) TH_LOG("the client's end: %s: %s", what,
				     strerror(errno));
	what = veth_end(p, false, variant->early_demux);
	ASSERT_EQ(NULL, what) TH_LOG("the server's end: %s: %s", what,
				     strerror(errno));
}

FIXTURE_TEARDOWN(flow)
{
	/* Namespaces, veth, tables and sockets go with the process. */
}

/*
 * An established connection to a normal listener on 80 keeps working after
 * a rule for 80 is added: its data segments and ACKs (client to port 80,
 * the packets the rule covers) still reach the accepted socket, while a
 * new connection goes to the target.
 */
TEST_F(flow, established_keeps_its_socket)
{
	const struct path *p = &self->p;
	int l[2], c, s, c2, s2, i, err;

	l[0] = tcp_listener(p, PORT);
	l[1] = tcp_listener(p, TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);

	c = tcp_connect(p, PORT);
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
	c2 = tcp_connect(p, PORT);
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

/*
 * A handshake still in progress (the server side a SYN_RECV request socket)
 * when the rule is added completes on the original listener. nftables on
 * the client's side drops the client's ACK of the SYN-ACK, so the client
 * is connected while the server waits; the data that finally completes
 * the handshake arrives after the rule exists.
 */
TEST_F(flow, handshake_in_progress_keeps_its_listener)
{
	const struct path *p = &self->p;
	char script[512], buf[32];
	int l[2], c, cport, s, c2, s2, err;

	if (!have_nft(p))
		SKIP(return, "nft is not installed, or nf_tables is not available");

	l[0] = tcp_listener(p, PORT);
	l[1] = tcp_listener(p, TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);
	c = tcp_client_bound(p, 0);
	ASSERT_LE(0, c);
	cport = sock_port(c, false);

	snprintf(script, sizeof(script),
		 "add chain inet pd_precedence out { type filter hook output priority 0; }\n"
		 "add rule inet pd_precedence out %s saddr %s tcp sport %d tcp dport %d tcp flags & (syn | ack) == ack counter drop\n",
		 p->family == AF_INET6 ? "ip6" : "ip", p->cli, cport, PORT);
	ASSERT_EQ(0, nft(p, script))
		TH_LOG("cannot install the nftables drop rule");

	err = connect_to(p, c, PORT);
	ASSERT_EQ(0, err) TH_LOG("connect: %s", strerror(-err));
	/* The client is connected, the server still waits for its ACK. */
	EXPECT_FALSE(pd_readable(l[0], QUIET_MS))
		TH_LOG("the handshake completed: the ACK was not dropped");
	EXPECT_EQ(TCP_SYN_RECV, tcp_state(p, PORT, cport))
		TH_LOG("no SYN_RECV request socket for port %d", cport);

	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT,
			  l[1])) TH_LOG("portctl add: %s", self->out);
	ASSERT_EQ(0, nft(p, "delete table inet pd_precedence\n"));

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
	c2 = tcp_connect(p, PORT);
	ASSERT_LE(0, c2);
	EXPECT_EQ(1, accept_any(l, 2, WAIT_MS, &s2));
}

/*
 * What time_wait() and reopen() saw: which of the two listeners accepted
 * each connection, and the step that failed if one did.
 */
struct reopen {
	int first, second;	/* index into l[] of who accepted */
	int cport;		/* the client's port, both times */
	uint32_t rcv_nxt;	/* what the TIME_WAIT socket expects next */
	int c, s;		/* the second connection, both ends */
	int tw_after;		/* the TIME_WAIT socket after the reopen */
	int err;		/* errno of the step that failed */
	const char *step;	/* what failed, NULL when nothing did */
};

/*
 * The sequence number @fd sends next (its write_seq), read in repair mode
 * and left without a window probe: 0 or -errno. Needs CAP_NET_ADMIN.
 */
static int next_seq(int fd, uint32_t *seq)
{
	int on = TCP_REPAIR_ON, off = TCP_REPAIR_OFF_NO_WP;
	int q = TCP_SEND_QUEUE, none = TCP_NO_QUEUE, err = 0;
	socklen_t len = sizeof(*seq);

	if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &on, sizeof(on)))
		return -errno;
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) ||
	    getsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, seq, &len))
		err = -errno;
	setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &none, sizeof(none));
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &off, sizeof(off)) && !err)
		err = -errno;
	return err;
}

/*
 * Connect to PORT from a port of our own and exchange data; then the
 * server closes first, so that its side ends in TIME_WAIT, and the client
 * closes. Its FIN is the last sequence number the TIME_WAIT socket saw.
 */
static void time_wait(const struct path *p, const int *l, struct reopen *r)
{
	int c, s, err;

	memset(r, 0, sizeof(*r));
	r->first = r->second = r->c = r->s = -1;

	c = tcp_client_bound(p, 0);
	if (c < 0) {
		r->step = "binding the client";
		r->err = -c;
		return;
	}
	r->cport = sock_port(c, false);
	err = connect_to(p, c, PORT);
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
	if (!err)
		err = next_seq(c, &r->rcv_nxt);
	if (err) {
		r->step = "first exchange, and reading the client's sequence";
		r->err = -err;
		return;
	}
	r->rcv_nxt++;	/* the client's FIN */
	close(s);
	if (!sees_eof(c)) {
		r->step = "the server's FIN";
		return;
	}
	close(c);
	if (wait_state(p, PORT, r->cport, TCP_TIME_WAIT, WAIT_MS) !=
	    TCP_TIME_WAIT)
		r->step = "the server side entering TIME_WAIT";
}

/* Connect again from the same port: the same 4-tuple. */
static void reopen(const struct path *p, const int *l, struct reopen *r)
{
	int err;

	/* The SYN's timestamp and sequence are newer. */
	r->c = tcp_client_bound(p, r->cport);
	if (r->c < 0) {
		r->step = "binding the client's port again";
		r->err = -r->c;
		return;
	}
	err = connect_to(p, r->c, PORT);
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
	r->tw_after = tcp_state(p, PORT, r->cport) == TCP_TIME_WAIT;
}

/*
 * A SYN that reopens a 4-tuple whose server side is in TIME_WAIT is a new
 * flow: the rule's target takes it, as TPROXY's would, not the normal
 * listener that the stack's own TIME_WAIT handling would pick.
 */
TEST_F(flow, time_wait_reopen_is_a_new_flow)
{
	const struct path *p = &self->p;
	struct reopen r;
	int l[2];

	l[0] = tcp_listener(p, PORT);
	l[1] = tcp_listener(p, TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);
	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT,
			  l[1])) TH_LOG("portctl add: %s", self->out);

	time_wait(p, l, &r);
	if (!r.step)
		reopen(p, l, &r);
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
TEST_F(flow, time_wait_reopen_without_rule_goes_to_listener)
{
	const struct path *p = &self->p;
	struct reopen r;
	int l[2];

	l[0] = tcp_listener(p, PORT);
	l[1] = tcp_listener(p, TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);
	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "tcp", PORT + 1,
			  l[1])) TH_LOG("portctl add: %s", self->out);

	time_wait(p, l, &r);
	if (!r.step)
		reopen(p, l, &r);
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

/* Ones' complement sum of @len bytes taken as big-endian 16-bit words. */
static uint32_t csum_add(uint32_t sum, const void *buf, size_t len)
{
	const uint8_t *b = buf;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += b[i] << 8 | b[i + 1];
	if (len & 1)
		sum += b[len - 1] << 8;
	return sum;
}

/*
 * The checksum of a TCP header without options or payload, from the
 * client to the server, with its pseudo-header (for both families the
 * same sum: addresses, protocol, length).
 */
static uint16_t tcp_csum(const struct path *p, const struct tcphdr *th)
{
	size_t alen = p->family == AF_INET ? 4 : 16;
	uint8_t src[16], dst[16];
	uint32_t sum;

	inet_pton(p->family, p->cli, src);
	inet_pton(p->family, p->srv, dst);
	sum = csum_add(0, src, alen);
	sum = csum_add(sum, dst, alen);
	sum += IPPROTO_TCP + sizeof(*th);
	sum = csum_add(sum, th, sizeof(*th));
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons(~sum & 0xffff);
}

/* A raw TCP socket on the client's address: it sends what we craft. */
static int raw_tcp(const struct path *p)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(p->family, p->cli, 0, &ss);
	int fd = cli_socket(p, SOCK_RAW, IPPROTO_TCP);

	if (fd >= 0 && bind(fd, (struct sockaddr *)&ss, len)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/*
 * A SYN from the client's @cport to the server's PORT with sequence
 * number @seq, no options (so no timestamp), and a checksum that is right
 * or, with @bad_csum, wrong.
 */
static int send_syn(const struct path *p, int raw, int cport, uint32_t seq,
		    bool bad_csum)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(p->family, p->srv, 0, &ss);
	struct tcphdr th = {
		.source = htons(cport),
		.dest = htons(PORT),
		.seq = htonl(seq),
		.doff = sizeof(th) / 4,
		.syn = 1,
		.window = htons(65535),
	};

	th.check = tcp_csum(p, &th);
	if (bad_csum)
		th.check ^= htons(0x5a5a);
	if (sendto(raw, &th, sizeof(th), 0, (struct sockaddr *)&ss, len) !=
	    sizeof(th))
		return -errno;
	return 0;
}

/* The MSS option of a TCP header of @len bytes, 0 if it has none. */
static int tcp_mss(const struct tcphdr *th, size_t len)
{
	const uint8_t *o = (const uint8_t *)(th + 1);
	size_t i = 0, n = th->doff * 4;

	if (n > len)
		n = len;
	if (n < sizeof(*th))
		return 0;
	n -= sizeof(*th);
	while (i < n && o[i] != TCPOPT_EOL) {
		if (o[i] == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= n || o[i + 1] < 2)
			break;
		if (o[i] == TCPOPT_MAXSEG && o[i + 1] == 4 && i + 4 <= n)
			return o[i + 2] << 8 | o[i + 3];
		i += o[i + 1];
	}
	return 0;
}

/*
 * Wait up to @ms for a SYN-ACK from the server's PORT to the client's
 * @cport, read on the raw socket: the MSS it advertises (0: none), or -1
 * when none came.
 */
static int synack_mss(const struct path *p, int raw, int cport, int ms)
{
	long end = pd_now_ms() + ms, left;
	uint8_t buf[2048];

	while ((left = end - pd_now_ms()) > 0 && pd_readable(raw, left)) {
		const struct tcphdr *th;
		ssize_t n = recv(raw, buf, sizeof(buf), MSG_DONTWAIT);
		size_t off = 0;

		if (n <= 0)
			continue;
		/* IPv4 raw sockets get the IP header, IPv6 ones do not. */
		if (p->family == AF_INET)
			off = (buf[0] & 0xf) * 4;
		if ((size_t)n < off + sizeof(*th))
			continue;
		th = (const struct tcphdr *)(buf + off);
		if (ntohs(th->source) == PORT && ntohs(th->dest) == cport &&
		    th->syn && th->ack)
			return tcp_mss(th, n - off);
	}
	return -1;
}

/* A TCP counter of /proc/net/snmp (the namespace's), -1 if not found. */
static long tcp_counter(const char *name)
{
	return pd_proc_counter("/proc/net/snmp", "Tcp", name);
}

/* A listener whose SYN-ACKs advertise MARK_MSS: they say who answered. */
static int marked_listener(const struct path *p, int port)
{
	int fd = tcp_listener(p, port), mss = MARK_MSS;

	if (fd >= 0 &&
	    setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss))) {
		close(fd);
		return -1;
	}
	return fd;
}

enum syn_kind { GOOD_SYN, BAD_CHECKSUM, OLD_SEQUENCE };

static const char *const syn_kind_name[] = {
	[GOOD_SYN] = "a good SYN",
	[BAD_CHECKSUM] = "a SYN with a bad checksum",
	[OLD_SEQUENCE] = "a SYN with an old sequence number",
};

/*
 * The rule's target served a connection whose server side is now in
 * TIME_WAIT; a crafted SYN of @kind reuses its 4-tuple. TCP would reopen
 * the 4-tuple for a good SYN only: then the target must answer and the
 * TIME_WAIT socket be gone. Any other SYN must reach no listener and
 * leave the TIME_WAIT socket alone.
 */
static void __crafted_syn(struct __test_metadata *_metadata,
			  const struct path *p, char *out, size_t outlen,
			  enum syn_kind kind)
{
	const char *what = syn_kind_name[kind];
	long csum_errors;
	struct reopen r;
	int l[2], raw, mss, tw;
	uint32_t seq;

	/*
	 * The client's stack answers the TIME_WAIT socket's ACK to an
	 * unacceptable SYN with an RST, which would end TIME_WAIT (RFC
	 * 1337's hazard) before the test looks: the TIME_WAIT socket here
	 * ignores RSTs.
	 */
	ASSERT_EQ(0, sysctl_set("net/ipv4/tcp_rfc1337", "1"));
	l[0] = tcp_listener(p, PORT);
	l[1] = marked_listener(p, TARGET_PORT);
	ASSERT_LE(0, l[0]);
	ASSERT_LE(0, l[1]);
	ASSERT_EQ(0, rule(out, outlen, "add", "tcp", PORT, l[1]))
		TH_LOG("portctl add: %s", out);

	time_wait(p, l, &r);
	ASSERT_TRUE(r.step == NULL)
		TH_LOG("%s failed: %s", r.step, strerror(r.err));
	ASSERT_EQ(1, r.first) TH_LOG("the first connection was not steered");

	raw = raw_tcp(p);
	ASSERT_LE(0, raw) TH_LOG("raw TCP socket: %s", strerror(-raw));
	/* Far from rcv_nxt either way, within 2^31: before or after it. */
	seq = r.rcv_nxt + (kind == OLD_SEQUENCE ? -(1u << 20) : 1u << 20);
	csum_errors = tcp_counter("InCsumErrors");
	ASSERT_EQ(0, send_syn(p, raw, r.cport, seq, kind == BAD_CHECKSUM));
	mss = synack_mss(p, raw, r.cport, kind == GOOD_SYN ? WAIT_MS : QUIET_MS);
	tw = tcp_state(p, PORT, r.cport) == TCP_TIME_WAIT;
	TH_LOG("%s: sequence %u, TIME_WAIT expects %u; SYN-ACK MSS %d (%d marks the target); TIME_WAIT after: %d; TCP checksum errors %+ld",
	       what, seq, r.rcv_nxt, mss, MARK_MSS, tw,
	       tcp_counter("InCsumErrors") - csum_errors);

	if (kind == GOOD_SYN) {
		EXPECT_EQ(MARK_MSS, mss)
			TH_LOG("%s for a TIME_WAIT 4-tuple was answered by %s, not the rule's target",
			       what, mss < 0 ? "nobody" : "the normal listener");
		EXPECT_EQ(0, tw)
			TH_LOG("the TIME_WAIT socket outlived %s that TCP accepts",
			       what);
		return;
	}
	EXPECT_EQ(-1, mss)
		TH_LOG("%s that TCP refuses in TIME_WAIT reached %s",
		       what, mss == MARK_MSS ? "the rule's target" :
					       "the normal listener");
	EXPECT_EQ(1, tw)
		TH_LOG("%s that TCP refuses ended the TIME_WAIT socket", what);
}

#define crafted_syn(kind)						\
	__crafted_syn(_metadata, &self->p, self->out, sizeof(self->out), kind)

TEST_F(flow, time_wait_good_syn_reopens_to_target)
{
	crafted_syn(GOOD_SYN);
}

TEST_F(flow, time_wait_kept_on_bad_checksum)
{
	crafted_syn(BAD_CHECKSUM);
}

TEST_F(flow, time_wait_kept_on_old_sequence)
{
	crafted_syn(OLD_SEQUENCE);
}

#define UDP_PORT	5353
#define UDP_TARGET_PORT	5354

static int udp_bound(const struct path *p, int port)
{
	return pd_server(p->family, SOCK_DGRAM, p->srv, port, false);
}

/* Send @msg from @fd (a client socket) to the server's @port. */
static int udp_send(const struct path *p, int fd, int port, const char *msg)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(p->family, p->srv, port, &ss);

	if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&ss, len) < 0)
		return -errno;
	return 0;
}

/*
 * A datagram waiting on @fd within @ms: its length (-1 if none), the
 * sender's port in *@peer and, where the socket asked for its original
 * destination (IP_RECVORIGDSTADDR, IPV6_RECVORIGDSTADDR), the port it was
 * sent to in *@dst.
 */
static int udp_recv(int fd, char *buf, size_t len, int ms, int *peer,
		    int *dst)
{
	char cbuf[CMSG_SPACE(sizeof(struct sockaddr_in6))];
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
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		struct sockaddr_storage ss = { 0 };
		size_t clen = cm->cmsg_len - CMSG_LEN(0);

		if ((cm->cmsg_level == SOL_IP &&
		     cm->cmsg_type == IP_ORIGDSTADDR) ||
		    (cm->cmsg_level == SOL_IPV6 &&
		     cm->cmsg_type == IPV6_ORIGDSTADDR)) {
			memcpy(&ss, CMSG_DATA(cm),
			       clen < sizeof(ss) ? clen : sizeof(ss));
			*dst = pd_sockaddr_port(&ss);
		}
	}
	return n;
}

/*
 * A UDP socket on the server's 5353 connected to client C keeps C's
 * datagrams after a rule for 5353; datagrams from another client D are
 * new flows and go to the target, with their destination intact.
 */
TEST_F(flow, connected_udp_keeps_its_datagrams)
{
	const struct path *p = &self->p;
	int u, t, cl, d, cport, dport, i, n, peer, dst, err, on = 1;
	struct sockaddr_storage ss;
	char msg[64], buf[128];
	socklen_t len;

	cl = client_bound(p, SOCK_DGRAM, 0);
	d = client_bound(p, SOCK_DGRAM, 0);
	ASSERT_LE(0, cl);
	ASSERT_LE(0, d);
	cport = sock_port(cl, false);
	dport = sock_port(d, false);

	u = udp_bound(p, UDP_PORT);
	ASSERT_LE(0, u);
	len = pd_sockaddr(p->family, p->cli, cport, &ss);
	ASSERT_EQ(0, connect(u, (struct sockaddr *)&ss, len));
	t = udp_bound(p, UDP_TARGET_PORT);
	ASSERT_LE(0, t);
	if (p->family == AF_INET)
		err = setsockopt(t, SOL_IP, IP_RECVORIGDSTADDR, &on, sizeof(on));
	else
		err = setsockopt(t, SOL_IPV6, IPV6_RECVORIGDSTADDR, &on,
				 sizeof(on));
	ASSERT_EQ(0, err) TH_LOG("asking for the original destination: %s",
				 strerror(errno));

	ASSERT_EQ(0, rule(self->out, sizeof(self->out), "add", "udp",
			  UDP_PORT, t)) TH_LOG("portctl add: %s", self->out);

	for (i = 0; i < 4; i++) {
		snprintf(msg, sizeof(msg), "from C %d", i);
		ASSERT_EQ(0, udp_send(p, cl, UDP_PORT, msg));
		snprintf(msg, sizeof(msg), "from D %d", i);
		ASSERT_EQ(0, udp_send(p, d, UDP_PORT, msg));
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

/* The tests below run on loopback, in one namespace. */
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
#define CHURN_TIMEOUT_S	(pd_ms(10 * 1000) / 1000)

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
	long start = pd_now_ms(), took;
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
	took = pd_now_ms() - start;
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

	ch.lfd[0] = tcp_listener(&lo4, TARGET_PORT + 1);
	ch.lfd[1] = tcp_listener(&lo4, TARGET_PORT + 2);
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
		end = pd_now_ms() + CHURN_TIMEOUT_S * 1000;
		while (__atomic_load_n(&ch.last, __ATOMIC_ACQUIRE) != want &&
		       pd_now_ms() < end)
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

	l[0] = tcp_listener(&lo4, PORT);
	l[1] = tcp_listener(&lo4, TARGET_PORT);
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
