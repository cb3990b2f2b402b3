/*
 * What the two halves of the admin console share, for them alone: admin.c (parsing, SHOW, the
 * simple query protocol) and admin_control.c (the control commands, their waits, SET).
 */
#ifndef PGTIDE_ADMIN_INT_H
#define PGTIDE_ADMIN_INT_H

#include <stdbool.h>
#include <stddef.h>

struct client;
struct pbuf;

/* What running one console statement did. */
enum admin_result {
	ADMIN_DONE = 0, /* answered (rows or a command tag appended) */
	ADMIN_FAILED,   /* an ErrorResponse was appended: the rest of the Query is skipped */
	ADMIN_WAITING,  /* answers later (c->admin_wait is set) */
	ADMIN_GONE,     /* the console client itself was closed (SHUTDOWN, KILL_CLIENT) */
};

/* How a command takes its argument. */
enum admin_arg {
	ARG_NONE = 0, /* nothing may follow */
	ARG_OPT_DB,   /* [db] */
	ARG_DB,       /* db */
	ARG_ID,       /* a client id */
};

/*
 * A control command. admin.c reads its argument and checks access, so that every command
 * refuses malformed input and stats_users alike before it acts.
 */
struct admin_cmd {
	const char *name;
	enum admin_arg arg;
	enum admin_result (*fn)(struct client *c, struct pbuf *b, const char *arg);
};

/* admin.c */

void admin_put_command_complete(struct pbuf *b, const char *tag);

/* An ERROR for the console user, classified and counted like every other error. */
void admin_error(struct client *c, struct pbuf *b, const char *sqlstate, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/*
 * Reads a token: text in `quote` characters (a doubled one stands for itself; empty allowed if
 * empty_ok) or a run of letters, digits and the characters in `bare`. Returns false if neither
 * is there or it is longer than n - 1.
 */
bool admin_read_token(const char **pp, const char *end, char quote, const char *bare, bool empty_ok,
                      char *out, size_t n);

/* Which of the client settings drivers SHOW or SET (fake_params in admin.c) name is, or -1. */
int admin_fake_param(const char *name);

/*
 * Runs the statements of sql in order, appending their answers to b, until one fails, waits or
 * closes the console client. *n_run (if not NULL) gets how many ran.
 */
enum admin_result admin_run_statements(struct client *c, struct pbuf *b, const char *sql,
                                       size_t len, size_t *n_run);

/* admin_control.c */

/* The control command named word (lower case), or NULL. */
const struct admin_cmd *admin_control_find(const char *word);

/* SET key = value; p is what follows SET. */
enum admin_result admin_control_set(struct client *c, struct pbuf *b, const char *p,
                                    const char *end);

/* Keeps the n bytes of statements after c's waiting command, to run once it answers. */
void admin_control_keep_rest(struct client *c, const char *rest, size_t n);

#endif
