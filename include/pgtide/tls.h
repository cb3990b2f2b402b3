/*
 * TLS with OpenSSL, both sides. Clients: the context that accepts them (client_tls_*), rebuilt
 * on SIGHUP, and the TLS transport their io switches to after SSLRequest or a direct TLS
 * ClientHello. Servers: libpq makes the TLS connection (server_tls_* become its sslmode,
 * sslrootcert, ... keywords in pool.c); after takeover the io speaks through libpq's own SSL
 * object, which libpq keeps owning.
 */
#ifndef PGTIDE_TLS_H
#define PGTIDE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgtide/config.h"

struct io;
struct ssl_ctx_st;

/* The client side in force. Changes only when a (re)load of client_tls_* succeeds. */
struct tls_state {
	struct ssl_ctx_st *accept_ctx;   /* accepts clients; NULL with client_tls_sslmode disable */
	enum config_sslmode client_mode; /* the client_tls_sslmode accept_ctx was built for */
};

/*
 * Builds the client-side context from cfg's client_tls_* settings and puts it in force (the
 * old one stays alive for the connections made with it). On failure nothing changes: returns
 * false with why in err (a setting name and OpenSSL's reason).
 */
bool tls_load_client(struct tls_state *st, const struct config *cfg, char *err, size_t n);

/* Drops the context in force (shutdown). */
void tls_state_free(struct tls_state *st);

/*
 * Starts the server side of a handshake on io (the client sent SSLRequest and got 'S', or its
 * first bytes are a TLS ClientHello, passed as prefix because they were already read off the
 * socket). The handshake runs from io's events and ends in io's on_handshake. False if it
 * could not start.
 */
bool tls_accept(const struct tls_state *st, struct io *io, const uint8_t *prefix, size_t len);

/* After takeover of a libpq connection that uses TLS: io speaks through libpq's SSL object. */
bool tls_adopt(struct io *io, void *libpq_ssl);

/* The client offered ALPN "postgresql" and it was selected (PostgreSQL 17 direct TLS). */
bool tls_alpn_selected(const struct io *io);

/*
 * What SHOW CLIENTS and the log say about io's TLS, as PgBouncer writes it:
 * "TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519". "" for a plain connection.
 */
const char *tls_describe(const struct io *io, char *buf, size_t n);

#endif
