/*
 * Cancel keys: the BackendKeyData pgtide issues to each client, the table that finds a client
 * from a CancelRequest, and forwarding a cancel to the linked server's backend. libpq 15 keeps
 * the backend's secret to itself, so the cancel is sent by PQcancel on a short-lived worker
 * thread, never on the event loop.
 */
#ifndef PGTIDE_CANCEL_H
#define PGTIDE_CANCEL_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct cancel_table;

/* Most cancels in flight at once; more are dropped (and logged). */
#define CANCEL_MAX_INFLIGHT 64

struct cancel_table *cancel_table_new(void);
void cancel_table_free(struct cancel_table *t);

/* Draws a fresh random (pid, key) for c, unique in the table, and registers it. */
bool cancel_register(struct cancel_table *t, struct client *c, uint32_t *pid, uint32_t *key);
void cancel_unregister(struct cancel_table *t, uint32_t pid, uint32_t key);
/* The client that owns (pid, key), or NULL. */
struct client *cancel_lookup(struct cancel_table *t, uint32_t pid, uint32_t key);

/*
 * Sends a cancel for the backend of libpq connection pgconn (a PGconn *), on a worker thread.
 * Returns false if it could not be started (too many in flight, no memory). With ticket
 * non-NULL, *ticket is set to a handle that says when the request has reached PostgreSQL
 * (its postmaster has signalled the backend) or failed: until then the server must not take
 * another client's work, which the late cancel could hit. Release it with
 * cancel_ticket_release.
 */
struct cancel_ticket;
bool cancel_send(void *pgconn, struct cancel_ticket **ticket);
bool cancel_ticket_done(const struct cancel_ticket *t);
void cancel_ticket_release(struct cancel_ticket *t);

/* Cancels in flight now (for the admin console and tests). */
int cancel_inflight(void);

#endif
