/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Socket targets: the kernel never reaches into another process, so a
 * rule's socket is sent as a file descriptor of our own, copied from the
 * process with pidfd_getfd(2) (which needs ptrace-attach rights over it).
 */
#ifndef PORTCTL_TARGET_H
#define PORTCTL_TARGET_H

#include "parse.h"

/*
 * Takes our own copy of the socket that target t of spec, "pid PID [fd FD]",
 * names: fd FD, or without it the process's one listening TCP socket (tcp
 * rules) or bound, unconnected UDP socket (udp rules) that can take the
 * rule's family. Fills in t->pid_fd. Returns the copy, to be closed once
 * the kernel has answered, or -1 having said why.
 */
int target_take(const struct rule_spec *spec, struct target_spec *t);

#endif
