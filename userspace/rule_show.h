/* SPDX-License-Identifier: GPL-2.0 */
/* Rules as text and JSON, and in a batch line's words. */
#ifndef PORTCTL_RULE_SHOW_H
#define PORTCTL_RULE_SHOW_H

#include <stdbool.h>
#include <stddef.h>

#include "rule.h"

/*
 * Prints one rule: in text "tcp 80 any -> pid 4242 (nginx) fd 5 ...", the
 * targets of a group one after the other, "port 8443 weight 9, port 9443
 * weight 1", with the counters when stats; in JSON an object under key
 * (NULL in arrays), always with every key. No line end: the caller ends
 * the record.
 */
void rule_print(const char *key, const struct rule *r, bool stats);

/* "any", "ipv4" or "ipv6": the family a rule serves (0: both). */
const char *rule_family_text(uint8_t family);
/* The rule's prefix, "192.0.2.0/24"; for a rule with has_dst. */
void rule_format_dst(const struct rule *r, char *buf, size_t size);

/*
 * The rule in a batch line's words, without family option or target:
 * "tcp 80-90 dst 192.0.2.0/24". Returns false when portctl cannot
 * express it (a protocol or family it does not know).
 */
bool rule_format_words(const struct rule *r, char *buf, size_t len);
/* "-4 ", "-6 " or "": the option that restricts a batch line likewise. */
const char *rule_family_option(const struct rule *r);
/*
 * The targets in a batch line's words: "port 8080", "pid 4242 (nginx) fd 5",
 * a group's with their weights, "port 8443 weight 9, port 9443 weight 1".
 * With placeholders, a socket target is "pid PID fd FD", to be filled in.
 */
void rule_format_targets(const struct rule *r, bool placeholders, char *buf,
			 size_t len);
/*
 * One target in those words, without its weight: "port 8080", "pid 4242
 * (nginx) fd 5", with the process's name as the kernel gave it, control
 * characters and all: the caller escapes it for its format.
 */
void rule_format_target(const struct rule_target *t, char *buf, size_t len);

#endif
