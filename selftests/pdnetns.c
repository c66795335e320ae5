// SPDX-License-Identifier: GPL-2.0
/*
 * pdnetns: network namespaces made and destroyed by the hundred, each with
 * rules and live steered flows when it goes, for churn_vanish.sh.
 *
 *   pdnetns [-n COUNT] [-w WINDOW]
 *	COUNT times (default 1000), a child process enters a new namespace
 *	and there listens on [::]:8080 (TCP) and binds [::]:5353 (UDP), both
 *	families; adds "tcp 80 to" its listener (a socket target, which holds
 *	the socket) and "udp 53 to port 5353"; opens a TCP connection to port
 *	80 (IPv4 and IPv6 in turn) that the listener accepts with local port
 *	80; and sends a datagram to port 53 that the UDP socket answers,
 *	heard back from port 53. It keeps all of it open, rules, connection,
 *	flow, until it is killed (SIGKILL) when WINDOW (default 8) younger
 *	namespaces are up.
 *
 *	Each namespace gets a nsid in the initial one, which the kernel takes
 *	back only when it frees the namespace: when the last reference to it
 *	goes (its sockets', among others), not when its last process leaves.
 *	At the end pdnetns waits for every one of them to go.
 *
 *	The kernel takes a namespace's nsid away as it starts dismantling
 *	it, and dismantles one batch of namespaces after the other: so at
 *	the end one more namespace, empty, goes, and once it is freed every
 *	one before it is dismantled, the module's exit for it done.
 *
 * Prints "made COUNT namespaces in MS ms", "freed COUNT namespaces MS ms
 * after the last one's process went" and "all dismantled: ..."; exits 1
 * with "error ..." when a namespace failed or some were not freed in time.
 */

#include <fcntl.h>
#include <linux/net_namespace.h>
#include <signal.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#include "pd_link.h"
#pragma GCC diagnostic pop

/* Our nsids, well above those the kernel picks (the lowest free one). */
#define NSID_BASE	(1 << 20)

static void __attribute__((format(printf, 2, 3)))
report(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(fd, buf, n) != n)
		_exit(1);
}

/* The child of namespace @i: sets it all up, says "ok", and waits. */
static int child(int i, int rep)
{
	int family = i % 2 ? AF_INET6 : AF_INET;
	const char *lo = family == AF_INET ? "127.0.0.1" : "::1";
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct pdn_status st;
	int ls, us, c, a, uc;
	struct pdn n;
	char buf[16];

	if (pd_enter_netns()) {
		report(rep, "error %d: a new namespace: %s", i, strerror(errno));
		return 1;
	}
	if (i < 0)	/* the sentinel: nothing in it */
		goto done;
	ls = pd_server(AF_INET6, SOCK_STREAM, "::", 8080, false);
	us = pd_server(AF_INET6, SOCK_DGRAM, "::", 5353, false);
	if (ls < 0 || us < 0) {
		report(rep, "error %d: the servers: %s", i, strerror(errno));
		return 1;
	}
	if (pdn_open(&n)) {
		report(rep, "error %d: the family: %s", i, strerror(errno));
		return 1;
	}
	if (pdn_rule_to_fd(&n, PORTDISPATCH_CMD_RULE_ADD, IPPROTO_TCP, 80, ls,
			   &st) ||
	    pdn_rule_to_port(&n, PORTDISPATCH_CMD_RULE_ADD, IPPROTO_UDP, 53, 0,
			     5353, &st)) {
		report(rep, "error %d: a rule: %s %s", i, strerror(st.err),
		       st.msg);
		return 1;
	}

	c = pd_connect(family, SOCK_STREAM, lo, 80);
	if (c < 0) {
		report(rep, "error %d: connect to %s port 80: %s", i, lo,
		       strerror(-c));
		return 1;
	}
	a = pd_readable(ls, pd_ms(5000)) ? accept(ls, NULL, NULL) : -1;
	if (a < 0 || getsockname(a, (struct sockaddr *)&ss, &len) ||
	    pd_sockaddr_port(&ss) != 80) {
		report(rep, "error %d: the connection to port 80 was not steered to the listener",
		       i);
		return 1;
	}

	uc = pd_connect(family, SOCK_DGRAM, lo, 53);
	if (uc < 0 || send(uc, "q", 1, 0) != 1 ||
	    !pd_readable(us, pd_ms(5000))) {
		report(rep, "error %d: the datagram to port 53 did not reach port 5353",
		       i);
		return 1;
	}
	len = sizeof(ss);
	if (recvfrom(us, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &len) != 1 ||
	    sendto(us, "a", 1, 0, (struct sockaddr *)&ss, len) != 1 ||
	    recv(uc, buf, sizeof(buf), 0) != 1) {
		/* A connected socket hears only an answer from port 53. */
		report(rep, "error %d: no answer from port 53: %s", i,
		       strerror(errno));
		return 1;
	}

done:
	report(rep, "ok");
	for (;;)
		pause();
}

/* Names the namespace of process @pid @nsid here: 0 or -errno. */
static int set_nsid(pid_t pid, int nsid)
{
	char buf[256], path[64];
	struct nlmsghdr *nlh;
	struct rtgenmsg *g;
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	memset(buf, 0, sizeof(buf));
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWNSID;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->rtgen_family = AF_UNSPEC;
	mnl_attr_put_u32(nlh, NETNSA_FD, fd);
	mnl_attr_put_u32(nlh, NETNSA_NSID, nsid);
	err = pd_rtnl(nlh);
	close(fd);
	return err;
}

struct nsid_count {
	int first, count;	/* the nsids looked for */
	int found;
};

static int nsid_attr(const struct nlattr *a, void *data)
{
	struct nsid_count *c = data;
	int id;

	if (mnl_attr_get_type(a) != NETNSA_NSID ||
	    mnl_attr_validate(a, MNL_TYPE_U32))
		return MNL_CB_OK;
	id = (int)mnl_attr_get_u32(a);
	if (id >= c->first && id < c->first + c->count)
		c->found++;
	return MNL_CB_OK;
}

static int nsid_msg(const struct nlmsghdr *nlh, void *data)
{
	return mnl_attr_parse(nlh, sizeof(struct rtgenmsg), nsid_attr, data);
}

/* How many nsids in [first, first + count) name a namespace: or -errno. */
static int nsids_left(int first, int count)
{
	struct nsid_count c = { .first = first, .count = count };
	static char buf[32768];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	struct nlmsghdr *nlh;
	struct rtgenmsg *g;
	unsigned int portid;
	int ret = -1;
	ssize_t len;

	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto out;
	portid = mnl_socket_get_portid(nl);
	memset(buf, 0, 64);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETNSID;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = 1;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->rtgen_family = AF_UNSPEC;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		goto out;
	do {
		len = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (len < 0)
			goto out;
		ret = mnl_cb_run(buf, len, 1, portid, nsid_msg, &c);
	} while (ret > MNL_CB_STOP);
out:
	ret = ret < 0 ? -errno : c.found;
	if (nl)
		mnl_socket_close(nl);
	return ret;
}

/* The next line of child report @fd within @ms, in @buf. */
static bool read_report(int fd, char *buf, size_t size, int ms)
{
	size_t n = 0;

	while (n < size - 1 && pd_readable(fd, ms)) {
		ssize_t r = read(fd, buf + n, size - 1 - n);

		if (r <= 0)
			break;
		n += r;
		if (buf[n - 1] == '\n')
			break;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return n > 0;
}

static void end(pid_t *kids, int nkids)
{
	int i;

	for (i = 0; i < nkids; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
}

/* The child of namespace @i, its report pipe in *@rep: its pid, or -1. */
static pid_t spawn(int i, int *rep)
{
	int p[2];
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (!pid) {
		close(p[0]);
		_exit(child(i, p[1]));
	}
	close(p[1]);
	*rep = p[0];
	return pid;
}

/* Its report read, its nsid given: 0, or 1 and why printed. */
static int settle(int i, pid_t pid, int rep, int nsid)
{
	char line[512];
	bool ok = read_report(rep, line, sizeof(line), pd_ms(20000)) &&
		  !strcmp(line, "ok");
	int err;

	close(rep);
	if (!ok) {
		printf("%s\n", *line ? line :
		       "error: a namespace's process said nothing");
		return 1;
	}
	err = set_nsid(pid, nsid);
	if (err) {
		printf("error %d: its nsid: %s\n", i, strerror(-err));
		return 1;
	}
	return 0;
}

/* Until none of @count nsids from @first is left, or @ms went by: how many are. */
static int wait_freed(int first, int count, long ms)
{
	long end = pd_now_ms() + ms;
	int left;

	for (;;) {
		left = nsids_left(first, count);
		if (left <= 0 || pd_now_ms() > end)
			return left;
		usleep(50 * 1000);
	}
}

int main(int argc, char **argv)
{
	int count = 1000, window = 8, jobs = 2, i, j, opt, left, nkids;
	long start, made, gone;
	pid_t *kids, sentinel;

	while ((opt = getopt(argc, argv, "n:w:j:")) != -1) {
		switch (opt) {
		case 'n': count = atoi(optarg); break;
		case 'w': window = atoi(optarg); break;
		case 'j': jobs = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: pdnetns [-n COUNT] [-w WINDOW] [-j JOBS]\n");
			return 2;
		}
	}
	if (count < 1 || window < 1 || jobs < 1)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	nkids = window + jobs;
	kids = calloc(nkids, sizeof(*kids));
	if (!kids)
		return 1;

	start = pd_now_ms();
	for (i = 0; i < count; i += jobs) {
		int m = count - i < jobs ? count - i : jobs, rep[m];

		for (j = 0; j < m; j++) {
			int slot = (i + j) % nkids;

			/* The oldest goes while these come. */
			if (kids[slot]) {
				kill(kids[slot], SIGKILL);
				waitpid(kids[slot], NULL, 0);
			}
			kids[slot] = spawn(i + j, &rep[j]);
			if (kids[slot] < 0) {
				perror("fork");
				while (j--)
					close(rep[j]);
				end(kids, nkids);
				return 1;
			}
		}
		for (j = 0; j < m; j++) {
			if (settle(i + j, kids[(i + j) % nkids], rep[j],
				   NSID_BASE + i + j)) {
				while (++j < m)
					close(rep[j]);
				end(kids, nkids);
				return 1;
			}
		}
	}
	end(kids, nkids);
	gone = pd_now_ms();
	made = gone - start;
	printf("made %d namespaces in %ld ms, %ld ms each\n", count, made,
	       made / count);

	/* Freed within a bound, however many there were. */
	left = wait_freed(NSID_BASE, count, pd_ms(30000) + made);
	if (left) {
		if (left < 0)
			printf("error: the nsid dump: %s\n", strerror(-left));
		else
			printf("error: %d of %d namespaces were not freed %ld ms after their processes went\n",
			       left, count, pd_now_ms() - gone);
		return 1;
	}
	printf("freed %d namespaces %ld ms after the last one's process went\n",
	       count, pd_now_ms() - gone);

	/* One more, freed once the batches before it are dismantled. */
	sentinel = spawn(-1, &j);
	if (sentinel < 0 || settle(-1, sentinel, j, NSID_BASE + count)) {
		end(&sentinel, 1);
		return 1;
	}
	end(&sentinel, 1);
	left = wait_freed(NSID_BASE + count, 1, pd_ms(30000));
	if (left) {
		printf("error: a namespace made after the others was not freed %ld ms after its process went\n",
		       pd_now_ms() - gone);
		return 1;
	}
	printf("all dismantled: a namespace made after them freed %ld ms after\n",
	       pd_now_ms() - gone);
	return 0;
}
