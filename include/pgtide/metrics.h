/*
 * The live side of the statistics: bringing the per-pool figures up to date (socket bytes,
 * the stats_period tick behind SHOW STATS averages and log_stats), and the Prometheus
 * endpoint on metrics_listen (docs/metrics.md): GET /metrics in the text format 0.0.4, served
 * on the event loop by a small HTTP/1.1 responder on the io layer. Each scrape is one request
 * on one connection, bounded in size, count and time.
 */
#ifndef PGTIDE_METRICS_H
#define PGTIDE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "pgtide/proto.h"

struct pt_ctx;

/* Longest request head (request line and headers) read; longer ones get 431. */
#define METRICS_MAX_REQUEST 8192u
/* Scrape connections open at once; more wait in the listen backlog until one closes. */
#define METRICS_MAX_CONNS 16
/* Time a scrape connection may live, from accept to close (request, response, lingering). */
#define METRICS_CONN_TIMEOUT_USEC (10 * 1000000)

/* Brings every pool's byte counters up to date with its clients' sockets. */
void metrics_collect(struct pt_ctx *ctx);

/*
 * Janitor hook: once stats_period has passed since the last tick, each pool's figures for the
 * period become its stats_period (what SHOW STATS averages use), and with log_stats the
 * averages over every pool are logged.
 */
void metrics_janitor(struct pt_ctx *ctx, int64_t now);

/* Appends the metrics in the Prometheus text format 0.0.4 to out (after metrics_collect). */
void metrics_render(struct pt_ctx *ctx, struct pbuf *out);

/*
 * Listens on cfg.metrics_listen (nothing when empty). Returns false, logging why, when the
 * address cannot be bound (at start-up pgtide stops, as for listen_addr).
 */
bool metrics_open(struct pt_ctx *ctx);

/*
 * After a reload: if metrics_listen changed from `old`, listens on the new address and stops
 * listening on the old one (scrapes in progress finish). If the new address cannot be bound
 * the old listener is kept, and an error is logged.
 */
void metrics_reload(struct pt_ctx *ctx, const char *old);

/* Stops listening; scrapes in progress finish (shutdown: see metrics_free). */
void metrics_stop_listening(struct pt_ctx *ctx);

/* Frees closed scrape connections (the reaper). */
void metrics_reap(struct pt_ctx *ctx);

/* Closes everything and frees the endpoint (at exit). */
void metrics_free(struct pt_ctx *ctx);

#endif
