/* TLS with OpenSSL: the context that accepts clients, and the TLS transports of io.h. */
#include "pgtide/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "pgtide/io.h"

/*
 * client_tls_ciphers shortcuts, as PgBouncer (libusual's libtls) defines them. They apply to
 * TLS 1.2 and below; TLS 1.3 keeps OpenSSL's suites.
 */
static const struct {
	const char *name;
	const char *list;
} tls_cipher_shortcuts[] = {
        {"default", "HIGH+EECDH:HIGH+EDH:!SSLv3:!SHA384:!SHA256:!DSS:!aNULL"},
        {"secure", "HIGH+EECDH:HIGH+EDH:!SSLv3:!SHA384:!SHA256:!DSS:!aNULL"},
        {"compat", "HIGH:+3DES:!aNULL"},
        {"legacy", "HIGH:+3DES:!aNULL"},
        {"insecure", "ALL:!aNULL:!eNULL"},
        {"all", "ALL:!aNULL:!eNULL"},
        {"normal", "HIGH+EECDH:HIGH+EDH:HIGH+RSA:+SHA384:+SHA256:+SSLv3:+EDH:+RSA:-3DES:3DES+RSA:"
                   "!CAMELLIA:!DSS:!aNULL"},
        {"fast", "HIGH+EECDH:HIGH+EDH:HIGH+RSA:+AES256:+SHA256:+SHA384:+SSLv3:+EDH:+RSA:-3DES:"
                 "3DES+RSA:!CAMELLIA:!DSS:!aNULL"},
};

/* PostgreSQL 17's ALPN protocol name, in the wire format (length byte first). */
static const unsigned char tls_alpn_postgresql[] = "\x0apostgresql";

/* ---- errors ---- */

/* OpenSSL's first queued reason (without its "error:0A000086:SSL routines::" code), or dflt. */
static void tls_take_error(char *out, size_t n, const char *dflt)
{
	unsigned long e = ERR_get_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	if (reason)
		snprintf(out, n, "%s", reason);
	else if (e)
		ERR_error_string_n(e, out, n);
	else
		snprintf(out, n, "%s", dflt);
	ERR_clear_error();
}

/* ---- the context that accepts clients ---- */

/*
 * The client proposed ALPN: it must include "postgresql", as PostgreSQL 17 insists (a direct
 * TLS connection without ALPN is refused after the handshake, in client.c).
 */
static int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	unsigned char *sel = NULL;
	if (SSL_select_next_proto(&sel, outlen, tls_alpn_postgresql,
	                          sizeof(tls_alpn_postgresql) - 1, in,
	                          inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* Lowest and highest version of a CONFIG_TLS_V* mask, and the ones in between left out. */
static void tls_versions(unsigned mask, int *min, int *max, uint64_t *no_ops)
{
	static const struct {
		unsigned bit;
		int version;
		uint64_t no_op;
	} v[] = {
	        {CONFIG_TLS_V1_0, TLS1_VERSION, SSL_OP_NO_TLSv1},
	        {CONFIG_TLS_V1_1, TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
	        {CONFIG_TLS_V1_2, TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
	        {CONFIG_TLS_V1_3, TLS1_3_VERSION, SSL_OP_NO_TLSv1_3},
	};
	*min = *max = 0;
	*no_ops = 0;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		if (mask & v[i].bit) {
			if (!*min)
				*min = v[i].version;
			*max = v[i].version;
		}
	}
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (!(mask & v[i].bit) && v[i].version > *min && v[i].version < *max)
			*no_ops |= v[i].no_op;
}

static const char *tls_cipher_list(const char *value)
{
	for (size_t i = 0; i < sizeof(tls_cipher_shortcuts) / sizeof(tls_cipher_shortcuts[0]); i++)
		if (strcasecmp(value, tls_cipher_shortcuts[i].name) == 0)
			return tls_cipher_shortcuts[i].list;
	return value;
}

static bool tls_nonempty(const char *v)
{
	return v && v[0];
}

/* "client_tls_cert_file /path: no such file", from the setting that failed and OpenSSL's queue. */
static void tls_setting_error(const struct config *cfg, const char *what, char *err, size_t n)
{
	const char *value = strcmp(what, "client_tls_cert_file") == 0   ? cfg->client_tls_cert_file
	                    : strcmp(what, "client_tls_key_file") == 0  ? cfg->client_tls_key_file
	                    : strcmp(what, "client_tls_ca_file") == 0   ? cfg->client_tls_ca_file
	                    : strcmp(what, "client_tls_ciphers") == 0   ? cfg->client_tls_ciphers
	                    : strcmp(what, "client_tls13_ciphers") == 0 ? cfg->client_tls13_ciphers
	                    : strcmp(what, "client_tls_ecdhcurve") == 0 ? cfg->client_tls_ecdhcurve
	                                                                : cfg->client_tls_protocols;
	if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH) {
		snprintf(err, n, "client_tls_key_file %s does not match client_tls_cert_file %s",
		         cfg->client_tls_key_file, cfg->client_tls_cert_file);
		ERR_clear_error();
		return;
	}
	char reason[200];
	tls_take_error(reason, sizeof(reason), "unusable");
	/* OpenSSL says only "passed invalid argument" of an unknown group name. */
	if (strcmp(what, "client_tls_ecdhcurve") == 0)
		snprintf(reason, sizeof(reason),
		         "unknown group (OpenSSL's names: X25519, prime256v1, secp384r1, ...)");
	snprintf(err, n, "%s %s: %s", what, value ? value : "", reason);
}

/*
 * client_tls13_ciphers: OpenSSL 3 skips names it does not know as long as one is left, which
 * would turn a typo into a silently shorter list; each name is tried alone first so that any
 * unknown one is refused. Empty keeps OpenSSL's suites.
 */
static bool tls_set_tls13_suites(SSL_CTX *ctx, const char *list)
{
	if (!tls_nonempty(list))
		return true;
	char one[128];
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ":");
		if (n == 0 || n >= sizeof(one)) {
			ERR_raise(ERR_LIB_SSL, SSL_R_NO_CIPHER_MATCH);
			return false;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (!SSL_CTX_set_ciphersuites(ctx, one))
			return false;
		p += n;
		if (*p == ':')
			p++;
	}
	return SSL_CTX_set_ciphersuites(ctx, list) == 1;
}

/*
 * client_tls_ecdhcurve: the key exchange groups offered, in OpenSSL's names (X25519,
 * prime256v1 or P-256, secp384r1, ffdhe2048, ...), separated by colons or commas. "auto" and
 * "none" keep OpenSSL's list: PgBouncer's "none" never turned key exchange off either, and
 * TLS 1.3 has no handshake without a group.
 */
static bool tls_set_groups(SSL_CTX *ctx, const char *value)
{
	if (!tls_nonempty(value) || strcasecmp(value, "auto") == 0 ||
	    strcasecmp(value, "none") == 0)
		return true;
	char list[256];
	if (strlen(value) >= sizeof(list)) {
		ERR_raise(ERR_LIB_SSL, ERR_R_PASSED_INVALID_ARGUMENT);
		return false;
	}
	size_t n = 0;
	for (const char *c = value; *c; c++)
		if (*c != ' ' && *c != '\t')
			list[n++] = *c == ',' ? ':' : *c;
	list[n] = '\0';
	return SSL_CTX_set1_groups_list(ctx, list) == 1;
}

/*
 * client_tls_dheparams: without parameters OpenSSL offers no DHE suite. auto picks a group as
 * strong as the certificate's key; legacy the weakest the security level allows (PgBouncer's
 * 1024-bit, at level 1 only). ECDHE and TLS 1.3 do not depend on it.
 */
static void tls_set_dhe(SSL_CTX *ctx, const char *value)
{
	enum config_dheparams dh = CONFIG_DHE_AUTO;
	(void)config_dheparams_parse(value, &dh); /* config.c refused anything else */
	if (dh == CONFIG_DHE_AUTO)
		SSL_CTX_set_dh_auto(ctx, 1);
	else if (dh == CONFIG_DHE_LEGACY)
		SSL_CTX_set_dh_auto(ctx, 2);
}

static SSL_CTX *tls_build_accept_ctx(const struct config *cfg, enum config_sslmode mode, char *err,
                                     size_t n)
{
	const char *mode_name = cfg->client_tls_sslmode;
	if (!tls_nonempty(cfg->client_tls_key_file) || !tls_nonempty(cfg->client_tls_cert_file)) {
		snprintf(err, n,
		         "client_tls_sslmode = %s needs client_tls_key_file and "
		         "client_tls_cert_file",
		         mode_name);
		return NULL;
	}
	if (mode >= CONFIG_SSLMODE_VERIFY_CA && !tls_nonempty(cfg->client_tls_ca_file)) {
		snprintf(err, n, "client_tls_sslmode = %s needs client_tls_ca_file", mode_name);
		return NULL;
	}
	unsigned mask = 0;
	if (!config_tls_protocols_parse(cfg->client_tls_protocols, &mask)) {
		snprintf(err, n, "client_tls_protocols: invalid value '%s'",
		         cfg->client_tls_protocols ? cfg->client_tls_protocols : "");
		return NULL;
	}
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		tls_take_error(err, n, "could not create a TLS context");
		return NULL;
	}
	/*
	 * As PostgreSQL's server: no compression, no renegotiation, no session cache or tickets
	 * (every client is a fresh handshake; tickets would be bytes for nothing). An EOF without
	 * close_notify is an ordinary EOF.
	 */
	int min, max;
	uint64_t no_ops;
	tls_versions(mask, &min, &max, &no_ops);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                                 SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF |
	                                 SSL_OP_CIPHER_SERVER_PREFERENCE | no_ops);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	/*
	 * io.c writes from its out-queue, whose head moves and grows between a refused write and
	 * its retry; partial writes keep a large forward from being all-or-nothing. Idle clients
	 * give back OpenSSL's record buffers (about 34 KB each).
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                              SSL_MODE_RELEASE_BUFFERS);
	const char *what = "client_tls_protocols";
	if (!SSL_CTX_set_min_proto_version(ctx, min) || !SSL_CTX_set_max_proto_version(ctx, max))
		goto fail;
	what = "client_tls_ciphers";
	if (tls_nonempty(cfg->client_tls_ciphers) &&
	    !SSL_CTX_set_cipher_list(ctx, tls_cipher_list(cfg->client_tls_ciphers)))
		goto fail;
	what = "client_tls13_ciphers";
	if (!tls_set_tls13_suites(ctx, cfg->client_tls13_ciphers))
		goto fail;
	what = "client_tls_ecdhcurve";
	if (!tls_set_groups(ctx, cfg->client_tls_ecdhcurve))
		goto fail;
	tls_set_dhe(ctx, cfg->client_tls_dheparams);
	what = "client_tls_cert_file";
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->client_tls_cert_file) != 1)
		goto fail;
	what = "client_tls_key_file";
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->client_tls_key_file, SSL_FILETYPE_PEM) != 1)
		goto fail;
	if (SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	if (mode >= CONFIG_SSLMODE_VERIFY_CA) {
		/* A certificate is demanded and checked; under require and below it is not. */
		what = "client_tls_ca_file";
		if (SSL_CTX_load_verify_locations(ctx, cfg->client_tls_ca_file, NULL) != 1)
			goto fail;
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_tls_ca_file);
		if (!names)
			goto fail;
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
	return ctx;
fail:
	tls_setting_error(cfg, what, err, n);
	SSL_CTX_free(ctx);
	return NULL;
}

bool tls_load_client(struct tls_state *st, const struct config *cfg, char *err, size_t n)
{
	enum config_sslmode mode = CONFIG_SSLMODE_DISABLE;
	if (!config_sslmode_parse(cfg->client_tls_sslmode, &mode)) {
		snprintf(err, n, "client_tls_sslmode: invalid value");
		return false;
	}
	SSL_CTX *ctx = NULL;
	if (mode != CONFIG_SSLMODE_DISABLE) {
		ctx = tls_build_accept_ctx(cfg, mode, err, n);
		if (!ctx)
			return false;
	}
	/* Connections made with the old context hold their own reference to it. */
	if (st->accept_ctx)
		SSL_CTX_free(st->accept_ctx);
	st->accept_ctx = ctx;
	st->client_mode = mode;
	return true;
}

void tls_state_free(struct tls_state *st)
{
	if (st->accept_ctx)
		SSL_CTX_free(st->accept_ctx);
	st->accept_ctx = NULL;
	st->client_mode = CONFIG_SSLMODE_DISABLE;
}

/* ---- the transports ---- */

/*
 * After a fatal error OpenSSL forbids SSL_shutdown; quiet shutdown makes the one in close a
 * no-op.
 */
static void tls_fatal(SSL *ssl)
{
	SSL_set_quiet_shutdown(ssl, 1);
}

static ssize_t tls_read(struct io *io, void *buf, size_t len)
{
	SSL *ssl = io->tp_state;
	ERR_clear_error();
	int r = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (r > 0)
		return r;
	int saved = errno;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE: /* a key update to answer: the next event retries */
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN: /* close_notify */
		return 0;
	case SSL_ERROR_SYSCALL:
		tls_fatal(ssl);
		if (ERR_peek_error() == 0 && saved == 0)
			return 0; /* EOF without close_notify */
		errno = saved ? saved : EPROTO;
		ERR_clear_error();
		return -1;
	default:
		tls_fatal(ssl);
		/* libpq's connections do not ignore an EOF without close_notify: it is one. */
		if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return 0;
		}
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

static ssize_t tls_writev(struct io *io, const struct iovec *iov, int n)
{
	SSL *ssl = io->tp_state;
	(void)n; /* one buffer at a time: a short write is allowed */
	size_t len = iov[0].iov_len > INT_MAX ? INT_MAX : iov[0].iov_len;
	ERR_clear_error();
	int r = SSL_write(ssl, iov[0].iov_base, (int)len);
	if (r > 0)
		return r;
	int saved = errno;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		tls_fatal(ssl);
		ERR_clear_error();
		errno = saved ? saved : EPIPE;
		return -1;
	default:
		tls_fatal(ssl);
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

static size_t tls_pending(struct io *io)
{
	int p = SSL_pending(io->tp_state);
	return p > 0 ? (size_t)p : 0;
}

/* Ours: a client connection. Says goodbye (close_notify, best effort) and frees it. */
static void tls_close_owned(struct io *io)
{
	SSL *ssl = io->tp_state;
	if (!ssl)
		return;
	if (SSL_is_init_finished(ssl)) {
		ERR_clear_error();
		(void)SSL_shutdown(ssl);
	}
	ERR_clear_error();
	SSL_free(ssl);
	io->tp_state = NULL;
}

/* libpq's: PQfinish shuts it down and frees it; the PGconn its BIO calls into must outlive us. */
static void tls_close_borrowed(struct io *io)
{
	io->tp_state = NULL;
}

static void tls_verify_reason(SSL *ssl, char *err, size_t n)
{
	long v = SSL_get_verify_result(ssl);
	size_t l = strlen(err);
	if (v != X509_V_OK && l + 3 < n)
		snprintf(err + l, n - l, " (%s)", X509_verify_cert_error_string(v));
}

static enum io_handshake tls_handshake(struct io *io, char *err, size_t n)
{
	SSL *ssl = io->tp_state;
	for (;;) {
		ERR_clear_error();
		int r = SSL_do_handshake(ssl);
		BIO *rbio = SSL_get_rbio(ssl);
		bool prefix = BIO_method_type(rbio) == BIO_TYPE_MEM;
		if (r == 1) {
			/*
			 * Bytes that came with a direct ClientHello and are not handshake are data
			 * the client sent before it could know the keys: not something to act on.
			 */
			if (prefix && BIO_ctrl_pending(rbio) > 0) {
				snprintf(err, n, "unexpected data during the TLS handshake");
				tls_fatal(ssl);
				return IO_HANDSHAKE_FAILED;
			}
			if (prefix)
				SSL_set0_rbio(ssl, BIO_new_socket(io->fd, BIO_NOCLOSE));
			return IO_HANDSHAKE_DONE;
		}
		int saved = errno;
		switch (SSL_get_error(ssl, r)) {
		case SSL_ERROR_WANT_READ:
			if (prefix && BIO_ctrl_pending(rbio) == 0) {
				/* What was read before TLS began is used up: the socket comes next.
				 */
				BIO *sock = BIO_new_socket(io->fd, BIO_NOCLOSE);
				if (!sock) {
					snprintf(err, n, "out of memory");
					return IO_HANDSHAKE_FAILED;
				}
				SSL_set0_rbio(ssl, sock);
				continue;
			}
			return IO_HANDSHAKE_WANT_READ;
		case SSL_ERROR_WANT_WRITE:
			return IO_HANDSHAKE_WANT_WRITE;
		case SSL_ERROR_ZERO_RETURN:
			tls_fatal(ssl);
			snprintf(err, n, "the client closed the connection during the handshake");
			return IO_HANDSHAKE_FAILED;
		case SSL_ERROR_SYSCALL:
			tls_fatal(ssl);
			if (ERR_peek_error() == 0)
				snprintf(err, n, "%s",
				         saved ? strerror(saved)
				               : "the client closed the connection during the "
				                 "handshake");
			else
				tls_take_error(err, n, "handshake failed");
			return IO_HANDSHAKE_FAILED;
		default:
			tls_fatal(ssl);
			tls_take_error(err, n, "handshake failed");
			tls_verify_reason(ssl, err, n);
			return IO_HANDSHAKE_FAILED;
		}
	}
}

static const struct io_transport tls_transport_owned = {
        .read = tls_read,
        .writev = tls_writev,
        .close = tls_close_owned,
        .pending = tls_pending,
        .handshake = tls_handshake,
};

static const struct io_transport tls_transport_borrowed = {
        .read = tls_read,
        .writev = tls_writev,
        .close = tls_close_borrowed,
        .pending = tls_pending,
        .handshake = NULL,
};

static bool tls_is_ours(const struct io *io)
{
	return io->tp == &tls_transport_owned || io->tp == &tls_transport_borrowed;
}

bool tls_accept(const struct tls_state *st, struct io *io, const uint8_t *prefix, size_t len)
{
	if (!st->accept_ctx)
		return false;
	ERR_clear_error();
	SSL *ssl = SSL_new(st->accept_ctx);
	if (!ssl)
		goto fail;
	if (len > 0) {
		/*
		 * A direct ClientHello was read off the socket before anyone knew it was TLS:
		 * OpenSSL reads it from memory first, then (tls_handshake swaps) the socket.
		 */
		BIO *mem = BIO_new(BIO_s_mem());
		BIO *sock = BIO_new_socket(io->fd, BIO_NOCLOSE);
		if (!mem || !sock || BIO_write(mem, prefix, (int)len) != (int)len) {
			BIO_free(mem);
			BIO_free(sock);
			goto fail;
		}
		BIO_set_mem_eof_return(mem, -1); /* empty means "retry", not EOF */
		SSL_set_bio(ssl, mem, sock);
	} else if (SSL_set_fd(ssl, io->fd) != 1) {
		goto fail;
	}
	SSL_set_accept_state(ssl);
	if (!io_set_transport(io, &tls_transport_owned, ssl, true))
		goto fail;
	return true;
fail:
	if (ssl)
		SSL_free(ssl);
	ERR_clear_error();
	return false;
}

bool tls_adopt(struct io *io, void *libpq_ssl)
{
	SSL *ssl = libpq_ssl;
	if (!ssl)
		return false;
	/* libpq itself copes with partial writes (pqsecure_write's callers loop), for PQfinish. */
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return io_set_transport(io, &tls_transport_borrowed, ssl, false);
}

bool tls_alpn_selected(const struct io *io)
{
	if (!tls_is_ours(io) || !io->tp_state)
		return false;
	const unsigned char *p = NULL;
	unsigned int l = 0;
	SSL_get0_alpn_selected(io->tp_state, &p, &l);
	return l == sizeof(tls_alpn_postgresql) - 2 && memcmp(p, tls_alpn_postgresql + 1, l) == 0;
}

const char *tls_describe(const struct io *io, char *buf, size_t n)
{
	if (n == 0)
		return buf;
	buf[0] = '\0';
	if (!tls_is_ours(io) || !io->tp_state || io->handshaking)
		return buf;
	SSL *ssl = io->tp_state;
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	char kx[48] = "";
	int group = SSL_get_negotiated_group(ssl);
	if (group > 0 && !(group & TLSEXT_nid_unknown)) {
		const char *sn = OBJ_nid2sn(group);
		if (sn && strncmp(sn, "ffdhe", 5) == 0)
			snprintf(kx, sizeof(kx), "/DH=%s", sn + 5);
		else if (sn)
			snprintf(kx, sizeof(kx), "/ECDH=%s", sn);
	}
	snprintf(buf, n, "%s/%s%s", SSL_get_version(ssl), c ? SSL_CIPHER_get_name(c) : "-", kx);
	return buf;
}
