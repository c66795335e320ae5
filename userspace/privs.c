// SPDX-License-Identifier: GPL-2.0
#include "privs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* execvp()'s own search list when PATH is unset is only /bin:/usr/bin. */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static bool numeric_id(const char *s, uint32_t *id)
{
	/* (uid_t)-1 means "unchanged" to setresuid(): never a user. */
	return !parse_u32(s, id) && *id != UINT32_MAX;
}

static int resolve_group(const char *group, gid_t *gid)
{
	struct group *gr = getgrnam(group);
	uint32_t id;

	if (gr) {
		*gid = gr->gr_gid;
		return 0;
	}
	if (numeric_id(group, &id)) {
		*gid = id;
		return 0;
	}
	errorf("there is no group \"%s\"", group);
	return EXIT_ERROR;
}

int run_as_resolve(const char *spec, struct run_as *who)
{
	char *user = xstrdup(spec);
	char *group = strchr(user, ':');
	struct passwd *pw;
	uint32_t id;
	int ret = EXIT_ERROR;

	memset(who, 0, sizeof(*who));
	if (group)
		*group++ = '\0';
	if (!*user || (group && !*group)) {
		errorf("-u needs USER or USER:GROUP, not \"%s\"", spec);
		ret = EXIT_USAGE;
		goto out;
	}
	pw = getpwnam(user);
	if (!pw && numeric_id(user, &id))
		pw = getpwuid(id);
	if (pw) {
		who->uid = pw->pw_uid;
		who->gid = pw->pw_gid;
		who->name = xstrdup(pw->pw_name);
		who->home = xstrdup(pw->pw_dir);
		who->shell = xstrdup(pw->pw_shell);
	} else if (numeric_id(user, &id)) {
		if (!group) {
			errorf("uid %u has no entry in the user database, so no group: name one, as in -u %u:GROUP",
			       id, id);
			goto out;
		}
		who->uid = id;
	} else {
		errorf("there is no user \"%s\"", user);
		goto out;
	}
	if (group && resolve_group(group, &who->gid))
		goto out;
	who->set = true;
	who->spec = xstrdup(spec);
	ret = 0;
out:
	free(user);
	if (ret)
		run_as_free(who);
	return ret;
}

void run_as_free(struct run_as *who)
{
	free(who->spec);
	free(who->name);
	free(who->home);
	free(who->shell);
	memset(who, 0, sizeof(*who));
}

/*
 * A user the database knows gets its supplementary groups, as login and
 * systemd's User= give them; a bare uid gets none, rather than keeping
 * root's. 0, or -1 having said why.
 */
static int take_groups(const struct run_as *who)
{
	if (who->name ? initgroups(who->name, who->gid) : setgroups(0, NULL)) {
		errorf("could not take the groups of %s: %s", who->spec,
		       strerror(errno));
		return -1;
	}
	return 0;
}

int run_as_become(const struct run_as *who)
{
	if (take_groups(who))
		return -1;
	if (setresgid(who->gid, who->gid, who->gid)) {
		errorf("could not become group %u: %s", (unsigned int)who->gid,
		       strerror(errno));
		return -1;
	}
	/* Capabilities go with uid 0 only if they are not asked to stay. */
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	if (setresuid(who->uid, who->uid, who->uid)) {
		errorf("could not become %s: %s", who->spec, strerror(errno));
		return -1;
	}
	if (who->uid != 0 && setuid(0) == 0) {
		errorf("could still become root after becoming %s", who->spec);
		return -1;
	}
	return 0;
}

/* 0 if path is a file that we may execute, else errno. */
static int runnable(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return errno;
	/* As execve() says it of a directory. */
	if (!S_ISREG(st.st_mode))
		return EACCES;
	/* access() would answer for the real uid: root's, not who's. */
	return faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) ? errno : 0;
}

/* The search itself, as whoever runs it; the file, or NULL having said why. */
static char *search(const struct run_as *who, const char *command)
{
	const char *path = getenv("PATH");
	const char *dir, *end;
	char file[PATH_MAX];
	int err, denied = 0;

	if (strchr(command, '/')) {
		err = runnable(command);
		if (!err)
			return xstrdup(command);
		if (err == EACCES && who->set)
			errorf("%s may not run \"%s\"", who->spec, command);
		else
			errorf("cannot run \"%s\": %s", command, strerror(err));
		return NULL;
	}
	if (!path || !*path)
		path = DEFAULT_PATH;
	for (dir = path; ; dir = end + 1) {
		int n;

		end = strchrnul(dir, ':');
		/* An empty entry is the working directory, as for execvp(). */
		if (end == dir)
			n = snprintf(file, sizeof(file), "%s", command);
		else
			n = snprintf(file, sizeof(file), "%.*s/%s",
				     (int)(end - dir), dir, command);
		if (n > 0 && (size_t)n < sizeof(file)) {
			err = runnable(file);
			if (!err)
				return xstrdup(file);
			/* A directory of PATH we may not search hides nothing. */
			if (err == EACCES &&
			    !faccessat(AT_FDCWD, file, F_OK, AT_EACCESS))
				denied = 1;
		}
		if (!*end)
			break;
	}
	if (denied && who->set)
		errorf("%s may not run any \"%s\" in PATH", who->spec, command);
	else if (denied)
		errorf("no \"%s\" in PATH may be run", command);
	else
		errorf("there is no command \"%s\" in PATH", command);
	return NULL;
}

/* Who we were, to be again. */
struct ids {
	uid_t euid;
	gid_t egid;
	gid_t *groups;
	int ngroups;
};

static int take_off(const struct ids *was)
{
	if (seteuid(was->euid) || setegid(was->egid) ||
	    setgroups((size_t)was->ngroups, was->groups)) {
		errorf("could not be ourselves again: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Takes on who's effective ids and groups for a while: the real and saved
 * uid stay, and the capabilities come back with the effective uid. 0, or
 * -1 having said why and changed nothing (was->groups is freed then).
 */
static int wear(const struct run_as *who, struct ids *was)
{
	int n = getgroups(0, NULL);

	was->euid = geteuid();
	was->egid = getegid();
	was->groups = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*was->groups));
	was->ngroups = n < 0 ? n : getgroups(n, was->groups);
	if (was->ngroups < 0) {
		errorf("could not read our groups: %s", strerror(errno));
		goto out;
	}
	if (take_groups(who))
		goto out;
	if (setegid(who->gid)) {
		errorf("could not become group %u: %s", (unsigned int)who->gid,
		       strerror(errno));
		goto undo;
	}
	if (seteuid(who->uid)) {
		errorf("could not become %s: %s", who->spec, strerror(errno));
		goto undo;
	}
	return 0;
undo:
	take_off(was);
out:
	free(was->groups);
	return -1;
}

char *run_as_find_command(const struct run_as *who, const char *command)
{
	struct ids was;
	char *found;
	int ret;

	if (!who->set)
		return search(who, command);
	/* Only who can say what who may run (a directory of mode 0700...). */
	if (wear(who, &was))
		return NULL;
	found = search(who, command);
	ret = take_off(&was);
	free(was.groups);
	if (ret) {
		free(found);
		return NULL;
	}
	return found;
}
