// SPDX-License-Identifier: GPL-2.0
#include "nl.h"

#include <errno.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/portdispatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util.h"

/* Dump replies come in datagrams of up to 32 KiB; leave room. */
#define RX_BUFFER (64 * 1024)

struct family_reply {
	uint16_t id;
	uint32_t events_group;
};

static int parse_group(const struct nlattr *grp, struct family_reply *fr)
{
	const struct nlattr *a;
	const char *name = NULL;
	uint32_t id = 0;

	mnl_attr_for_each_nested(a, grp) {
		switch (mnl_attr_get_type(a)) {
		case CTRL_ATTR_MCAST_GRP_NAME:
			if (!mnl_attr_validate(a, MNL_TYPE_NUL_STRING))
				name = mnl_attr_get_str(a);
			break;
		case CTRL_ATTR_MCAST_GRP_ID:
			if (!mnl_attr_validate(a, MNL_TYPE_U32))
				id = mnl_attr_get_u32(a);
			break;
		}
	}
	if (name && !strcmp(name, PORTDISPATCH_MCGRP_EVENTS))
		fr->events_group = id;
	return 0;
}

static void family_data(const struct nlmsghdr *nlh, void *arg)
{
	struct family_reply *fr = arg;
	const struct nlattr *a, *grp;

	mnl_attr_for_each(a, nlh, GENL_HDRLEN) {
		switch (mnl_attr_get_type(a)) {
		case CTRL_ATTR_FAMILY_ID:
			if (!mnl_attr_validate(a, MNL_TYPE_U16))
				fr->id = mnl_attr_get_u16(a);
			break;
		case CTRL_ATTR_MCAST_GROUPS:
			mnl_attr_for_each_nested(grp, a)
				parse_group(grp, fr);
			break;
		}
	}
}

static int resolve_family(struct nl *nl)
{
	char buf[NL_MSG_MAX];
	struct family_reply fr = { 0 };
	struct nl_status st;
	struct nlmsghdr *nlh;
	struct genlmsghdr *g;

	memset(buf, 0, sizeof(buf));
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = GENL_ID_CTRL;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = ++nl->seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = CTRL_CMD_GETFAMILY;
	g->version = 1;
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, PORTDISPATCH_FAMILY_NAME);

	nl->family = GENL_ID_CTRL;	/* replies come as the controller */
	if (nl_request(nl, nlh, family_data, &fr, &st) && st.code != ENOENT) {
		nl_report(&st, "look up the portdispatch netlink family", false);
		return -1;
	}
	if (st.code == ENOENT || !fr.id) {
		errorf("the portdispatch module is not loaded (modprobe portdispatch)");
		return -1;
	}
	nl->family = fr.id;
	nl->events_group = fr.events_group;
	return 0;
}

int nl_open(struct nl *nl)
{
	int one = 1;

	memset(nl, 0, sizeof(*nl));
	nl->fd = -1;
	nl->sock = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
	if (!nl->sock || mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID)) {
		errorf("could not open a generic netlink socket: %s",
		       strerror(errno));
		nl_close(nl);
		return -1;
	}
	nl->fd = mnl_socket_get_fd(nl->sock);
	/*
	 * Extended acks carry the kernel's explanations; capped acks leave
	 * out the echo of our request, which we keep ourselves. Old kernels
	 * without them still work, just with terser errors.
	 */
	mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &one, sizeof(one));
	nl->seq = (uint32_t)time(NULL);
	nl->rxlen = RX_BUFFER;
	nl->rxbuf = xmalloc(nl->rxlen);
	if (resolve_family(nl)) {
		nl_close(nl);
		return -1;
	}
	return 0;
}

void nl_close(struct nl *nl)
{
	if (nl->sock)
		mnl_socket_close(nl->sock);
	nl->sock = NULL;
	nl->fd = -1;
	free(nl->rxbuf);
	nl->rxbuf = NULL;
}

struct nlmsghdr *nl_msg_start(struct nl *nl, void *buf, uint8_t cmd,
			      uint16_t flags)
{
	struct nlmsghdr *nlh;
	struct genlmsghdr *g;

	/* libmnl leaves attribute padding as it finds it: send no garbage. */
	memset(buf, 0, NL_MSG_MAX);
	nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = nl->family;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = ++nl->seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = PORTDISPATCH_FAMILY_VERSION;
	return nlh;
}

uint8_t nl_cmd(const struct nlmsghdr *nlh)
{
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);

	return nlh->nlmsg_len >= mnl_nlmsg_size(GENL_HDRLEN) ? g->cmd : 0;
}

int nl_send(struct nl *nl, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = mnl_socket_sendto(nl->sock, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if ((size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

static int extack_attr(const struct nlattr *a, void *data)
{
	struct nl_status *st = data;

	switch (mnl_attr_get_type(a)) {
	case NLMSGERR_ATTR_MSG:
		if (!mnl_attr_validate(a, MNL_TYPE_NUL_STRING))
			snprintf(st->msg, sizeof(st->msg), "%s",
				 mnl_attr_get_str(a));
		break;
	case NLMSGERR_ATTR_OFFS:
		if (!mnl_attr_validate(a, MNL_TYPE_U32)) {
			st->has_offs = true;
			st->offs = mnl_attr_get_u32(a);
		}
		break;
	}
	return MNL_CB_OK;
}

/*
 * NLMSG_ERROR: struct nlmsgerr, then the request (only its header when
 * capped), then the extack attributes. NLMSG_DONE: an int, then extack.
 */
static int parse_status(const struct nlmsghdr *nlh, struct nl_status *st)
{
	size_t off;

	memset(st, 0, sizeof(*st));
	st->seq = nlh->nlmsg_seq;
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

		if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
			return -1;
		st->code = -e->error;
		off = sizeof(*e);
		if (!(nlh->nlmsg_flags & NLM_F_CAPPED) &&
		    e->msg.nlmsg_len > sizeof(e->msg))
			off += e->msg.nlmsg_len - sizeof(e->msg);
	} else {
		int err;

		if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(err)))
			return 0;	/* old kernels sent an empty DONE */
		memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
		st->code = -err;
		off = sizeof(err);
	}
	off = MNL_ALIGN(off);
	if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) &&
	    mnl_nlmsg_size(off) < nlh->nlmsg_len)
		mnl_attr_parse(nlh, (unsigned int)off, extack_attr, st);
	if (st->code < 0)	/* never a positive error: treat as one */
		st->code = EPROTO;
	return 0;
}

int nl_recv(struct nl *nl, int flags, nl_cb cb, void *arg)
{
	struct sockaddr_nl sa;
	struct iovec iov = { .iov_base = nl->rxbuf, .iov_len = nl->rxlen };
	struct msghdr msg = {
		.msg_name = &sa, .msg_namelen = sizeof(sa),
		.msg_iov = &iov, .msg_iovlen = 1,
	};
	const struct nlmsghdr *nlh;
	struct nl_status st;
	ssize_t n;
	int len, ret;

	n = recvmsg(nl->fd, &msg, flags);
	if (n < 0)
		return -1;
	if (msg.msg_flags & MSG_TRUNC) {
		errno = EMSGSIZE;
		return -1;
	}
	if (sa.nl_pid != 0)	/* only the kernel speaks to us */
		return 0;

	len = (int)n;
	for (nlh = (const struct nlmsghdr *)nl->rxbuf; mnl_nlmsg_ok(nlh, len);
	     nlh = mnl_nlmsg_next(nlh, &len)) {
		if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
			nl->dump_intr = true;
		switch (nlh->nlmsg_type) {
		case NLMSG_NOOP:
		case NLMSG_OVERRUN:
			continue;
		case NLMSG_ERROR:
		case NLMSG_DONE:
			if (parse_status(nlh, &st))
				continue;
			ret = cb(nlh->nlmsg_type == NLMSG_ERROR ? NL_STATUS :
				 NL_DONE, nlh, &st, arg);
			break;
		default:
			if (nlh->nlmsg_type != nl->family)
				continue;
			ret = cb(NL_DATA, nlh, NULL, arg);
			break;
		}
		if (ret)
			return ret;
	}
	return 0;
}

struct request {
	uint32_t seq;
	nl_data_cb data;
	void *arg;
	struct nl_status *st;
};

static int request_cb(enum nl_event ev, const struct nlmsghdr *nlh,
		      const struct nl_status *st, void *arg)
{
	struct request *rq = arg;

	if (nlh->nlmsg_seq != rq->seq)	/* a stale reply */
		return 0;
	if (ev == NL_DATA) {
		if (rq->data)
			rq->data(nlh, rq->arg);
		return 0;
	}
	*rq->st = *st;
	return 1;
}

int nl_request(struct nl *nl, struct nlmsghdr *req, nl_data_cb data,
	       void *arg, struct nl_status *st)
{
	struct request rq = { .data = data, .arg = arg, .st = st };
	int ret;

	memset(st, 0, sizeof(*st));
	if (!(req->nlmsg_flags & NLM_F_DUMP))
		req->nlmsg_flags |= NLM_F_ACK;
	rq.seq = req->nlmsg_seq;
	nl->dump_intr = false;
	if (nl_send(nl, req, req->nlmsg_len)) {
		st->code = errno;
		return -1;
	}
	do
		ret = nl_recv(nl, 0, request_cb, &rq);
	while (!ret || (ret < 0 && errno == EINTR && !st->code));
	if (ret < 0 && !st->code)
		st->code = errno;
	return st->code ? -1 : 0;
}

void nl_grow_buffers(struct nl *nl, int sndbuf, int rcvbuf)
{
	if (sndbuf && setsockopt(nl->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf,
		       sizeof(sndbuf)))
		setsockopt(nl->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
			   sizeof(sndbuf));
	if (rcvbuf && setsockopt(nl->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf,
		       sizeof(rcvbuf)))
		setsockopt(nl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			   sizeof(rcvbuf));
}

void nl_report(const struct nl_status *st, const char *doing, bool changes)
{
	if (st->msg[0])
		errorf("%s", st->msg);
	else if (st->code == EPERM)
		errorf("%s the port table needs CAP_NET_ADMIN",
		       changes ? "changing" : "reading");
	else
		errorf("could not %s: %s", doing, strerror(st->code));
}
