/* SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, server side. Pure. */
#ifndef PGTIDE_SCRAM_H
#define PGTIDE_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN            32 /* SHA-256 */
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_SALT_LEN           16
#define SCRAM_MAX_SALT_LEN       64

/* A verifier as PostgreSQL stores it in pg_authid.rolpassword. */
struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* Parses "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>". */
bool scram_parse_secret(const char *s, struct scram_secret *out);

/* Derives a verifier from a password (SaltedPassword = PBKDF2-HMAC-SHA-256). */
bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                                int iterations, struct scram_secret *out);

/* Formats a verifier in PostgreSQL's text form; returns a malloc'd string. */
char *scram_format_secret(const struct scram_secret *s);

/* Result of a server step. */
enum scram_status {
	SCRAM_CONTINUE = 0,  /* send the produced message and wait for the next */
	SCRAM_OK,            /* proof verified; send the produced server-final message */
	SCRAM_FAIL_AUTH,     /* wrong password (or mock exchange for an unknown user) */
	SCRAM_FAIL_PROTOCOL, /* malformed message: 08P01 */
};

/* Server-side state of one exchange. */
struct scram_state {
	struct scram_secret secret;
	bool mock;               /* unknown user: go through the motions, then fail */
	char *client_first_bare; /* kept for the AuthMessage */
	char *server_first;
	char *client_nonce;
	char *server_nonce; /* client nonce + our random part */
	char *gs2_header;   /* "n,," or "y,," as the client sent it */
	const char *error;  /* static text for SCRAM_FAIL_* */
};

/*
 * Starts an exchange with a known secret (mock = false) or a mock one for an unknown user
 * (secret ignored; a salt derived from the user name and mock_iterations, the count verifiers
 * made by pgtide use, keep replies plausible).
 */
void scram_server_init(struct scram_state *st, const struct scram_secret *secret, bool mock,
                       const char *user, int mock_iterations);

/*
 * Handles the SASLInitialResponse data (client-first-message). On SCRAM_CONTINUE *out is the
 * malloc'd server-first-message. Channel binding ("p=") is refused: pgtide does not offer
 * SCRAM-SHA-256-PLUS on plain connections.
 */
enum scram_status scram_server_first(struct scram_state *st, const char *msg, size_t len,
                                     char **out);

/*
 * Handles the SASLResponse data (client-final-message). On SCRAM_OK *out is the malloc'd
 * server-final-message ("v=...").
 */
enum scram_status scram_server_final(struct scram_state *st, const char *msg, size_t len,
                                     char **out);

void scram_state_free(struct scram_state *st);

/* Base64 without line breaks; returns bytes written (out must hold 4*ceil(n/3)+1). */
size_t scram_b64_encode(const uint8_t *in, size_t n, char *out);
/* Returns decoded length, or -1 on bad input. out must hold 3*(n/4)+3 bytes. */
long scram_b64_decode(const char *in, size_t n, uint8_t *out);

#endif
