/*
 * Named prepared statements on the relay path: the client's extended-protocol messages are
 * rewritten onto pgtide's server-side names (preparing a statement first on a server that has
 * not seen it), and the server's replies are matched to what was sent, hiding the replies to
 * pgtide's own messages and producing those it answers itself. Active under transaction and
 * statement pooling when max_prepared_statements > 0. See prepared.h.
 */
#ifndef PGTIDE_PREPARED_RELAY_H
#define PGTIDE_PREPARED_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "pgtide/io.h"

struct client;
struct server;

/* True if named statements are translated for c's pool (not session pooling; the cache on). */
bool prep_active(const struct client *c);

/*
 * A client message on its way to its server s (state ACTIVE): Parse, Bind, Describe, Close,
 * Execute, Sync, Query, FunctionCall are recorded; named-statement messages are rewritten or
 * answered; a batch that may have to be replayed is copied. Returns PUMP_FORWARD (send as
 * is), PUMP_DROP (pgtide sent or answered it), PUMP_NEED_WHOLE or PUMP_CLOSED.
 */
enum pump_action prep_client_message(struct client *c, struct server *s, char type,
                                     const uint8_t *msg, uint32_t len, bool whole);

/* What to do with a server reply, after the ring has taken note of it. */
enum prep_reply {
	PREP_R_PASS = 0,    /* handle it as usual */
	PREP_R_HIDE,        /* the reply to pgtide's own message: drop it */
	PREP_R_NEED_WHOLE,  /* ask again with the whole message (nothing was done) */
	PREP_R_SENT,        /* pgtide sent its own version (a renamed 42P05); drop the original
	                     * but do the rest of the usual bookkeeping */
	PREP_R_ERROR_FIRST, /* a replay could not happen after all: relay the hidden error kept
	                     * in s->prep_replay.error first (and free it), then this reply */
};

/* Matches a server reply to what was sent (call while s->prep_ring is not empty). */
enum prep_reply prep_server_reply(struct server *s, char type, const uint8_t *msg, uint32_t len,
                                  bool whole);

/* True if the head of the ring is a reply pgtide makes itself (ParseComplete, CloseComplete):
 * after the current reply goes out, prep_emit_fakes sends them. */
bool prep_fakes_ready(struct server *s);
void prep_emit_fakes(struct server *s);

/* Sends again the batch whose 0A000 and ReadyForQuery were hidden (state PREP_REPLAY_DUE),
 * outside the server's pump. May close the client (OOM). */
void prep_replay_run(struct server *s);

/* The server's CommandComplete said DISCARD ALL or DEALLOCATE ALL: it has no statements now,
 * and the linked client (which ran it) has no names. */
void prep_server_forget_all(struct server *s);

/* The server is being unlinked from its client: replies still expected will be discarded. */
void prep_server_unlink(struct server *s);

/* Frees what a server or a client holds. */
void prep_server_free(struct server *s);
void prep_client_free(struct client *c);

#endif
