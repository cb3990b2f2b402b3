/*
 * The admin console: a virtual database (`pgtide`, alias `pgbouncer`) answered by pgtide
 * itself with ordinary result sets, for admin_users and stats_users. See docs/admin.md.
 */
#ifndef PGTIDE_ADMIN_H
#define PGTIDE_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "pgtide/io.h"

struct client;
struct pt_ctx;

/* True if a client asking for database `name` gets the admin console. */
bool admin_is_console_db(const char *name);

/*
 * Called once the client authenticated: refuses users outside admin_users and stats_users
 * (28000), otherwise completes the login (AuthenticationOk, ParameterStatus, BackendKeyData,
 * ReadyForQuery) with the client in state IDLE on ctx->admin_clients.
 */
void admin_login(struct client *c);

/* The message handler of an admin client (the simple query protocol; see io_ops). */
enum pump_action admin_on_message(struct client *c, char type, const uint8_t *msg, uint32_t len,
                                  bool whole);

/*
 * Re-checks the console commands that answer later (PAUSE, SUSPEND, WAIT_CLOSE) and answers
 * those whose condition now holds. Called on the janitor tick and by the reaper.
 */
void admin_tick(struct pt_ctx *ctx);

/* A CancelRequest for console client c: a waiting command is called off (57014) and undone. */
void admin_cancel(struct client *c);

/* Frees what a console client holds for a waiting command (client_free). */
void admin_client_free(struct client *c);

#endif
