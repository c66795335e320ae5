/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Links and addresses for portdispatch's C selftests, made with rtnetlink
 * (libmnl) in the namespace the caller is in, rather than with ip(8): on
 * the debug kernel every program started costs most of a second.
 * Everything here is static: each test program includes it once.
 */
#ifndef _PD_LINK_H
#define _PD_LINK_H

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <stdint.h>
#include <sys/socket.h>

/* One rtnetlink request and its ack: 0 or -errno. */
static inline int pd_rtnl(struct nlmsghdr *nlh)
{
	static char buf[8192];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	int err = 0;
	ssize_t n;

	if (!nl)
		return -errno;
	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = 1;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		err = -errno;
	} else {
		n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0 || mnl_cb_run(buf, n, 1, mnl_socket_get_portid(nl),
					NULL, NULL) < 0)
			err = -errno;
	}
	mnl_socket_close(nl);
	return err;
}

/* A veth pair: @name here, its peer @peer in namespace @peer_ns. */
static inline int pd_make_veth(const char *name, const char *peer,
			       int peer_ns)
{
	char buf[512];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nlattr *info, *data, *nest;

	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	nest = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	/* The peer's attributes follow an ifinfomsg of its own. */
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, peer_ns);
	mnl_attr_nest_end(nlh, nest);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	return pd_rtnl(nlh);
}

/* @addr/@plen on device @ifindex, without duplicate address detection. */
static inline int pd_add_addr(int family, int ifindex, const char *addr,
			      int plen)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	size_t alen = family == AF_INET ? 4 : 16;
	struct ifaddrmsg *ifa;
	uint8_t bin[16];

	if (inet_pton(family, addr, bin) != 1)
		return -EINVAL;
	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = family;
	ifa->ifa_prefixlen = plen;
	ifa->ifa_flags = IFA_F_NODAD;
	ifa->ifa_index = ifindex;
	mnl_attr_put(nlh, IFA_LOCAL, alen, bin);
	mnl_attr_put(nlh, IFA_ADDRESS, alen, bin);
	return pd_rtnl(nlh);
}

static inline int pd_link_up(int ifindex)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = RTM_NEWLINK;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = ifi->ifi_change = IFF_UP;
	return pd_rtnl(nlh);
}

/*
 * Give device @name @addr4/24 and @addr6/64 and bring it up: NULL, or
 * what failed, with errno saying why.
 */
static inline const char *pd_link_setup(const char *name, const char *addr4,
					const char *addr6)
{
	int ifindex = if_nametoindex(name), err;
	const char *what = NULL;

	err = ifindex ? 0 : -errno;
	if (err)
		what = "no such device";
	else if ((err = pd_add_addr(AF_INET, ifindex, addr4, 24)))
		what = "IPv4 address";
	else if ((err = pd_add_addr(AF_INET6, ifindex, addr6, 64)))
		what = "IPv6 address";
	else if ((err = pd_link_up(ifindex)))
		what = "link up";
	errno = -err;
	return what;
}

#endif /* _PD_LINK_H */
