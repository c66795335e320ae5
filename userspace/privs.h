/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Who "portctl exec" becomes, and what it runs. Everything that can fail
 * is tried before the table changes: once portctl has given up root it
 * can no longer take a rule back.
 */
#ifndef PORTCTL_PRIVS_H
#define PORTCTL_PRIVS_H

#include <stdbool.h>
#include <sys/types.h>

/* The user of -u USER[:GROUP]. */
struct run_as {
	bool set;		/* -u was given */
	char *spec;		/* as written, for messages */
	uid_t uid;
	gid_t gid;
	char *name;		/* NULL: a uid the user database does not know */
	char *home;
	char *shell;
};

/*
 * Looks USER[:GROUP] up (names or numbers). Returns 0, or having said
 * why EXIT_USAGE (malformed) or EXIT_ERROR (no such user or group). Free with run_as_free().
 */
int run_as_resolve(const char *spec, struct run_as *who);
void run_as_free(struct run_as *who);

/*
 * Becomes who for good: its groups, then its gid, then its uid; leaving
 * uid 0 drops every capability (the kernel's setuid rules). Returns 0,
 * or -1 having said why.
 */
int run_as_become(const struct run_as *who);

/*
 * The file that exec would run for command, found in PATH as execvp()
 * does, checked as who would run it when -u was given (with who's ids
 * and groups as the effective ones, meanwhile). Returns it (to be freed),
 * or NULL having said why.
 */
char *run_as_find_command(const struct run_as *who, const char *command);

#endif
