/* The configuration: pgbouncer.ini layout, parsed from text into plain structs. Pure. */
#ifndef PGTIDE_CONFIG_H
#define PGTIDE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pool modes, as PgBouncer names them. POOL_MODE_UNSET means "inherit". */
enum pool_mode {
	POOL_MODE_UNSET = -1,
	POOL_MODE_SESSION = 0,     /* server linked for the client's whole session */
	POOL_MODE_TRANSACTION = 1, /* server linked until ReadyForQuery 'I' */
	POOL_MODE_STATEMENT = 2,   /* server linked for one statement; no multi-statement txns */
};

/* Client authentication methods (auth_type). */
enum auth_type {
	AUTH_TYPE_TRUST = 0, /* no password asked; the user must still be in auth_file */
	AUTH_TYPE_ANY,       /* no password asked, any user name accepted */
	AUTH_TYPE_PLAIN,     /* cleartext password, checked against plain, md5 or SCRAM secret */
	AUTH_TYPE_MD5,       /* md5 challenge; SCRAM for users whose stored secret is SCRAM */
	AUTH_TYPE_SCRAM,     /* scram-sha-256 */
};

/* TLS modes, as PgBouncer's client_tls_sslmode / server_tls_sslmode and libpq's sslmode name
 * them, weakest first (comparisons like >= CONFIG_SSLMODE_REQUIRE rely on the order). */
enum config_sslmode {
	CONFIG_SSLMODE_DISABLE = 0, /* no TLS */
	CONFIG_SSLMODE_ALLOW,       /* TLS if the client asks for it */
	CONFIG_SSLMODE_PREFER,      /* same as allow on the client side */
	CONFIG_SSLMODE_REQUIRE,     /* TLS or nothing; a client certificate is not checked */
	CONFIG_SSLMODE_VERIFY_CA,   /* TLS with a client certificate signed by the CA file */
	CONFIG_SSLMODE_VERIFY_FULL, /* client side: same as verify-ca (as in PgBouncer) */
};

/* client_tls_dheparams: which finite-field Diffie-Hellman groups TLS 1.2 DHE suites may use. */
enum config_dheparams {
	CONFIG_DHE_NONE = 0, /* no DHE suites (OpenSSL offers none without parameters) */
	CONFIG_DHE_AUTO,     /* a group as strong as the certificate's key (default) */
	CONFIG_DHE_LEGACY,   /* the weakest group the OpenSSL security level allows (1024-bit at
	                      * level 1) */
};

/* TLS protocol versions, as bits of a client_tls_protocols / server_tls_protocols mask. */
#define CONFIG_TLS_V1_0 0x1u
#define CONFIG_TLS_V1_1 0x2u
#define CONFIG_TLS_V1_2 0x4u
#define CONFIG_TLS_V1_3 0x8u

/* A key=value pair kept in order (libpq connection keywords, [users] settings). */
struct config_kv {
	char *key;
	char *value;
};

/* One [databases] entry. Integer settings are -1 when the entry does not set them. */
struct config_db {
	char *name; /* the name clients ask for; "*" is the fallback entry */
	struct config_kv
	        *conn; /* libpq keywords/values, in file order (host, port, dbname, user, ...) */
	size_t n_conn;
	int pool_size;                 /* pool_size=, else -1 (use default_pool_size) */
	int min_pool_size;             /* min_pool_size=, else -1 */
	int reserve_pool;              /* reserve_pool=, else -1 */
	int max_db_connections;        /* max_db_connections=, else -1 */
	int max_db_client_connections; /* max_db_client_connections=, else -1 */
	int64_t server_lifetime;       /* server_lifetime= (usec; 0 turns it off here), else -1 */
	enum pool_mode pool_mode;      /* pool_mode=, else POOL_MODE_UNSET */
	char *connect_query;   /* connect_query=, run once on each new server connection, or NULL */
	char *client_encoding; /* client_encoding=/datestyle=/timezone=: server connection defaults
	                        */
	char *datestyle;
	char *timezone;
	int line; /* line in the file, for messages */
};

/*
 * One [users] entry. Each field overrides its [databases] and [pgtide] namesakes for the
 * pools that log in as this user; client_idle_timeout applies to the clients that log in to
 * pgtide under this name (as in PgBouncer). Times are microseconds; 0 turns a timeout off for
 * the user.
 */
struct config_user {
	char *name;
	enum pool_mode pool_mode;         /* else POOL_MODE_UNSET */
	int max_user_connections;         /* else -1 */
	int max_user_client_connections;  /* else -1 */
	int pool_size;                    /* else -1 */
	int reserve_pool_size;            /* else -1 */
	int64_t query_timeout;            /* else -1 */
	int64_t idle_transaction_timeout; /* else -1 */
	int64_t transaction_timeout;      /* else -1 */
	int64_t client_idle_timeout;      /* else -1 */
	int line;
};

/* Every [pgtide] / [pgbouncer] setting pgtide implements. Times are microseconds; 0 disables. */
struct config {
	char *listen_addr;        /* comma-separated addresses, "*" for all; NULL/"" = no TCP */
	int listen_port;          /* default 6432 */
	int listen_backlog;       /* default 128 */
	char *unix_socket_dir;    /* directory for .s.PGSQL.<port>; "" = none */
	int unix_socket_mode;     /* default 0777 */
	char *unix_socket_group;  /* group name the socket file is given; "" = ours (default) */
	enum auth_type auth_type; /* default md5 */
	char *auth_file;          /* userlist.txt path; relative paths are relative to the ini */
	int scram_iterations;     /* default 4096: PBKDF2 rounds of verifiers pgtide computes */
	enum pool_mode pool_mode; /* default session */
	int max_client_conn;      /* default 100 */
	int default_pool_size;    /* default 20 */
	int min_pool_size;        /* default 0 */
	int reserve_pool_size;    /* default 0 */
	int64_t reserve_pool_timeout;    /* default 5 s */
	int max_db_connections;          /* default 0 = unlimited */
	int max_user_connections;        /* default 0 = unlimited */
	int max_db_client_connections;   /* default 0 = unlimited: clients per database name */
	int max_user_client_connections; /* default 0 = unlimited: clients per user name */
	bool server_round_robin;  /* off (default): reuse the most recently used idle server (LIFO);
	                           * on: the one idle longest (FIFO), spreading load */
	bool disable_pqexec;      /* refuse the simple Query message (and close the client) */
	bool server_fast_close;   /* session pooling: a server marked for closing closes at the
	                           * end of its client's transaction, and the client with it */
	char *server_reset_query; /* default "DISCARD ALL" */
	bool server_reset_query_always; /* run it in transaction mode too; default off */
	char *server_check_query;       /* default "select 1" (accepted for compatibility) */
	int64_t server_check_delay;     /* default 30 s */
	int64_t server_lifetime;        /* default 3600 s */
	int64_t autodb_idle_timeout;    /* default 3600 s: drop unused pools made from "*" */
	int64_t server_idle_timeout;    /* default 600 s */
	int64_t server_connect_timeout; /* default 15 s */
	int64_t server_login_retry;     /* default 15 s: wait this long after a failed connect */
	int64_t client_login_timeout;   /* default 60 s */
	int64_t query_timeout;          /* default 0 */
	int64_t query_wait_timeout;     /* default 120 s */
	int64_t query_wait_notify;   /* default 5 s: NOTICE to a client waiting longer than this */
	int64_t client_idle_timeout; /* default 0 */
	int64_t idle_transaction_timeout; /* default 0 */
	int64_t transaction_timeout;      /* default 0 */
	int64_t shutdown_wait_timeout; /* default 60 s: SIGINT waits at most this long for clients
	                                */
	int64_t cancel_wait_timeout;   /* default 10 s */
	int64_t suspend_timeout;       /* default 10 s: SUSPEND closes what did not flush by then */
	int max_packet_size;           /* default 2147483647 */
	int pkt_buf;                   /* default 4096: read chunk size */
	char *logfile;                 /* "" = stderr only */
	char *pidfile;                 /* "" = none */
	bool syslog;
	char *syslog_ident;              /* default "pgtide" */
	char *syslog_facility;           /* default "daemon": see config_syslog_facility() */
	bool log_connections;            /* default on */
	bool log_disconnections;         /* default on */
	bool log_pooler_errors;          /* default on */
	int verbose;                     /* default 0 */
	char *admin_users;               /* comma-separated */
	char *stats_users;               /* comma-separated */
	char *ignore_startup_parameters; /* accepted; pgtide honours every parameter anyway */
	char *track_extra_parameters;    /* accepted; pgtide tracks every parameter anyway */
	char *application_name_add_host; /* accepted for compatibility */
	bool tcp_keepalive;              /* default on */
	int tcp_keepidle, tcp_keepintvl, tcp_keepcnt; /* 0 = OS default */
	int tcp_user_timeout;  /* TCP_USER_TIMEOUT in ms on client and server sockets; 0 = OS's */
	int tcp_socket_buffer; /* SO_SNDBUF and SO_RCVBUF in bytes, same sockets; 0 = kernel's */
	int tcp_defer_accept;  /* TCP_DEFER_ACCEPT seconds on TCP listeners; default 1, 0 = off */
	bool so_reuseport;     /* SO_REUSEPORT on TCP listeners: processes share a port */
	int max_prepared_statements; /* default 200 (used by the prepared-statement module) */
	char *error_kind_field;      /* default "K"; "" turns the extra error field off */
	char *log_error_kinds;   /* level of the line logged per classified error: off, debug, log
	                          * (default), warning */
	char *pin_session_state; /* on (default), off, error: see pin.h */
	char *metrics_listen;    /* "" = off; HOST:PORT of the Prometheus endpoint (metrics.h) */
	int stats_period;        /* default 60 s: SHOW STATS averages cover this long */
	bool log_stats;          /* default on: log the averages every stats_period */

	/* TLS (tls.c), PgBouncer's names. Paths are made absolute against the ini's folder. */
	char *client_tls_sslmode;  /* disable (default), allow, prefer, require, verify-ca, -full */
	char *client_tls_key_file; /* pgtide's private key for clients */
	char *client_tls_cert_file; /* ... and its certificate (chain) */
	char *client_tls_ca_file;   /* CA that signs client certificates (verify-ca/-full) */
	char *client_tls_protocols; /* "secure" (default: TLS 1.2 and 1.3), "all", "tlsv1.2", ... */
	char *client_tls_ciphers;   /* OpenSSL cipher list or a shortcut (default "fast") */
	char *client_tls13_ciphers; /* TLS 1.3 suites, OpenSSL syntax; "" = OpenSSL's (default) */
	char *client_tls_ecdhcurve; /* key exchange groups; "auto" (default) or "none" = OpenSSL's
	                             */
	char *client_tls_dheparams; /* none, auto (default), legacy: see enum config_dheparams */
	char *server_tls_sslmode;   /* libpq sslmode for server connections (default disable) */
	char *server_tls_ca_file;   /* libpq sslrootcert */
	char *server_tls_key_file;  /* libpq sslkey */
	char *server_tls_cert_file; /* libpq sslcert */
	char *server_tls_protocols; /* libpq ssl_min/max_protocol_version (default "secure") */

	struct config_db *dbs;
	size_t n_dbs;
	struct config_user *users;
	size_t n_users;

	char *path; /* the ini file this came from, or NULL */
};

/* A diagnostic produced while loading: a warning (unknown key) or the error that stopped it. */
struct config_diag {
	char *file;
	int line;
	char *key; /* may be NULL */
	char *message;
};

/* Result of config_parse. */
enum config_result {
	CONFIG_OK = 0,
	CONFIG_ERROR, /* a known key had a bad value, a line could not be parsed, ... */
	CONFIG_IO,    /* the file could not be read */
};

/*
 * Validates a libpq connection keyword. Returns true if libpq knows it. The caller passes one
 * built from PQconndefaults() so this module needs no libpq; NULL accepts every keyword.
 */
typedef bool (*config_conn_keyword_fn)(const char *keyword);

/* Fills cfg with every default. */
void config_defaults(struct config *cfg);

/*
 * Parses ini text (file names a path for messages). On CONFIG_OK cfg holds the result and
 * *warnings and *n_warnings the warnings (unknown or unimplemented keys). On CONFIG_ERROR *err
 * says what and where; cfg is left freed. The caller frees diags with config_diag_free.
 */
enum config_result config_parse(struct config *cfg, const char *text, size_t len, const char *file,
                                config_conn_keyword_fn kw_ok, struct config_diag **warnings,
                                size_t *n_warnings, struct config_diag *err);

/* Reads the file at path and parses it (relative auth_file etc. resolved against its folder). */
enum config_result config_load(struct config *cfg, const char *path, config_conn_keyword_fn kw_ok,
                               struct config_diag **warnings, size_t *n_warnings,
                               struct config_diag *err);

/*
 * Parses one libpq-style "key=value key2='quoted value'" string into pairs, as used in
 * [databases] and [users] values. Returns false with *errmsg set (static text) on bad syntax.
 */
bool config_parse_kv_string(const char *s, struct config_kv **out, size_t *n_out,
                            const char **errmsg);

/* Finds the entry for database name (exact first, then "*"), or NULL. */
const struct config_db *config_find_db(const struct config *cfg, const char *name);
/* Finds the [users] entry, or NULL. */
const struct config_user *config_find_user(const struct config *cfg, const char *name);
/*
 * The client limits in force for a database name (its entry's max_db_client_connections, else
 * the global one) and for a user name (its [users] entry's, else the global one); 0: none.
 */
int config_db_client_limit(const struct config *cfg, const char *db);
int config_user_client_limit(const struct config *cfg, const char *user);
/* Value of a connection keyword in db, or NULL. */
const char *config_db_conn_get(const struct config_db *db, const char *key);
/* Longest host part of a HOST:PORT setting. */
#define CONFIG_HOST_MAX 256

/*
 * Splits "HOST:PORT", "[IPv6]:PORT" or "*:PORT" (metrics_listen). Returns false for anything
 * else (no port, port outside 1..65535, an IPv6 address without brackets, spaces).
 */
bool config_split_host_port(const char *value, char *host, size_t host_len, int *port);

/* True if name appears in a comma-separated list (admin_users, stats_users). */
bool config_list_contains(const char *list, const char *name);

/* Parses an sslmode name (disable ... verify-full). False if it is not one. */
bool config_sslmode_parse(const char *value, enum config_sslmode *out);
const char *config_sslmode_name(enum config_sslmode m);

/* Parses client_tls_dheparams (none, auto, legacy, any case). False if it is not one. */
bool config_dheparams_parse(const char *value, enum config_dheparams *out);

/*
 * Parses a TLS protocol list in PgBouncer's syntax into CONFIG_TLS_V* bits: tlsv1.0, tlsv1.1,
 * tlsv1.2, tlsv1.3 and the shortcuts all / legacy (every version), secure / default (1.2 and
 * 1.3), separated by commas, colons or blanks; a leading ! removes a version. False if a word
 * is unknown or nothing is left.
 */
bool config_tls_protocols_parse(const char *value, unsigned *mask);

/* Names for enums, as written in the ini file. */
const char *config_pool_mode_name(enum pool_mode m);
const char *config_auth_type_name(enum auth_type t);

/*
 * Walks every [pgtide] setting for SHOW CONFIG: calls fn(key, value_as_text, arg) in table order.
 */
void config_each_setting(const struct config *cfg,
                         void (*fn)(const char *key, const char *value, void *arg), void *arg);

/* One [pgtide] setting as SHOW CONFIG shows it. */
struct config_setting_view {
	const char *key;
	const char *value; /* as config_each_setting renders it */
	const char *def;   /* the default, rendered the same way */
	bool changeable;   /* SET on the admin console may change it (else only a restart) */
};

/* Walks every [pgtide] setting in table order with its value, default and changeability. */
void config_each_setting_view(const struct config *cfg,
                              void (*fn)(const struct config_setting_view *v, void *arg),
                              void *arg);

/* syslog_facility names, in this order: auth, authpriv, daemon, user, local0 .. local7. */
enum config_syslog_facility {
	CONFIG_SYSLOG_AUTH = 0,
	CONFIG_SYSLOG_AUTHPRIV,
	CONFIG_SYSLOG_DAEMON,
	CONFIG_SYSLOG_USER,
	CONFIG_SYSLOG_LOCAL0, /* local0 .. local7 follow in order */
	CONFIG_SYSLOG_N_FACILITIES = CONFIG_SYSLOG_LOCAL0 + 8,
};

/* The enum config_syslog_facility of a name (case-insensitive), or -1 if it is none. */
int config_syslog_facility(const char *name);

/* True if key names a setting that SET may change while pgtide runs. */
bool config_setting_changeable(const char *key);

/* What config_set did. */
enum config_set_result {
	CONFIG_SET_OK = 0,
	CONFIG_SET_UNKNOWN,     /* no such setting */
	CONFIG_SET_UNSUPPORTED, /* a PgBouncer setting pgtide accepts in a file but ignores */
	CONFIG_SET_FIXED,       /* takes effect only at start (listen_port, ...) */
	CONFIG_SET_INVALID,     /* the value is refused; why says why */
	CONFIG_SET_OOM,
};

/*
 * Changes one [pgtide] setting of cfg to value, parsed as the file's value would be (SET on the
 * admin console). The key is matched case-insensitively; *name gets its table name (set unless
 * CONFIG_SET_UNKNOWN or CONFIG_SET_UNSUPPORTED). cfg is untouched unless CONFIG_SET_OK. The
 * caller applies the change (pools, log) where it matters.
 */
enum config_set_result config_set(struct config *cfg, const char *key, const char *value,
                                  const char **name, char *why, size_t why_len);

/* Frees everything cfg owns (safe on a defaults-only or zeroed struct). */
void config_free(struct config *cfg);
void config_diag_free(struct config_diag *d);
void config_diags_free(struct config_diag *d, size_t n);

#endif
