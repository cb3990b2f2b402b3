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

#endif
